// Stands in for Prisma's `query-engine` binary, for prisma-client-py 0.15 (LiteLLM's client).
//
// Why: the proxy's Prisma client spawns a native query engine that is downloaded from
// Prisma's own host, which this kind of machine cannot reach. npm serves the same engine
// (commit 393aa359…) built to WebAssembly, with a PostgreSQL driver adapter. This program
// runs that engine and serves the HTTP API the Python client speaks to its binary:
//
//   query-engine --version                     prints "query-engine <commit>"
//   query-engine -p PORT [flags...]            serves on 127.0.0.1:PORT
//     GET  /status                             {"status": "ok"} once connected
//     POST /                                   one GraphQL request, or {"batch": [...]}
//                                              (header X-transaction-id: run inside it)
//     POST /transaction/start                  {"timeout", "max_wait"} -> {"id"}
//     POST /transaction/ID/commit|rollback
//     GET  /metrics                            empty metrics
//
// The Python client writes GraphQL (PRISMA_ENGINE_PROTOCOL=graphql); the Wasm engine only
// reads Prisma's JSON protocol. Requests are parsed and rewritten: `result: findManyX(args)
// { fields }` becomes {modelName: X, action: findMany, query: {arguments, selection}}, and
// the schema (PRISMA_DML_PATH) says which input values are DateTime/Json/BigInt/Decimal/Bytes
// so they are tagged ({"$type": "Json", "value": "..."}) as the JSON protocol needs. Answers go
// back as the GraphQL engine gave them: under "result", tagged values as plain strings/numbers.
//
// The database: OVERWRITE_DATASOURCES (set by the client for a datasource override) or the
// schema's datasource url (env("DATABASE_URL")). Node packages come from WA_PRISMA_MODULES
// (a node_modules directory: @prisma/query-engine-wasm, @prisma/adapter-pg, pg).

import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const MODULES = process.env.WA_PRISMA_MODULES;

function fail(message) {
  process.stderr.write(`query-engine shim: ${message}\n`);
  process.exit(1);
}

async function loadEngine() {
  if (!MODULES) fail('WA_PRISMA_MODULES is not set (the node_modules with @prisma/query-engine-wasm)');
  const dir = path.join(MODULES, '@prisma', 'query-engine-wasm', 'postgresql');
  const glue = await import(pathToFileURL(path.join(dir, 'query_engine_bg.js')).href);
  const module = new WebAssembly.Module(fs.readFileSync(path.join(dir, 'query_engine_bg.wasm')));
  const instance = new WebAssembly.Instance(module, { './query_engine_bg.js': glue });
  glue.__wbg_set_wasm(instance.exports);
  return glue;
}

// ------------------------------------------------------------------------------------------
// The schema: per model, its fields' types and which fields are relations.

export function parseSchema(text) {
  const blocks = [...text.matchAll(/^\s*(model|enum|type|datasource|generator)\s+(\w+)\s*\{([\s\S]*?)^\s*\}/gm)];
  const modelNames = new Set(blocks.filter((b) => b[1] === 'model').map((b) => b[2]));
  const models = new Map();
  let datasourceUrl = null;
  for (const [, kind, name, body] of blocks) {
    if (kind === 'datasource') {
      const url = body.match(/^\s*url\s*=\s*(.+?)\s*$/m);
      if (url) datasourceUrl = url[1];
      continue;
    }
    if (kind !== 'model') continue;
    const fields = new Map();
    for (const raw of body.split('\n')) {
      const line = raw.replace(/\/\/.*$/, '').trim();
      const match = line.match(/^(\w+)\s+(\w+)(\[\])?(\?)?/);
      if (!match) continue;
      const [, field, type] = match;
      fields.set(field, { type, relation: modelNames.has(type) });
    }
    models.set(name, fields);
  }
  return { models, datasourceUrl };
}

function resolveDatasourceUrl(schema) {
  const override = process.env.OVERWRITE_DATASOURCES;
  if (override) {
    const list = JSON.parse(override);
    if (Array.isArray(list) && list.length && list[0].url) return list[0].url;
  }
  const raw = schema.datasourceUrl;
  if (!raw) fail('the schema has no datasource url');
  const fromEnv = raw.match(/^env\(\s*"(\w+)"\s*\)$/);
  if (fromEnv) {
    const value = process.env[fromEnv[1]];
    if (!value) fail(`${fromEnv[1]} is not set (the schema's datasource url)`);
    return value;
  }
  return JSON.parse(raw);
}

// Prisma-style URL parameters that node-postgres does not know are dropped; the ones that
// matter become pool settings.
export function poolConfig(url) {
  const parsed = new URL(url);
  const config = {};
  const limit = parsed.searchParams.get('connection_limit');
  if (limit) config.max = Number(limit);
  const options = parsed.searchParams.get('options');
  if (options) config.options = options;
  const schema = parsed.searchParams.get('schema');
  for (const key of [...parsed.searchParams.keys()]) {
    if (!['sslmode', 'application_name'].includes(key)) parsed.searchParams.delete(key);
  }
  config.connectionString = parsed.toString();
  return { config, schema };
}

// Raw queries may return PostgreSQL types the driver adapter has no column type for (pg_views'
// `name`, `regclass`, `void` ...); the native engine read them as text. Results of a pooled
// connection are relabelled so the adapter does the same.
const AS_TEXT = new Map([[18, 25], [19, 25], [26, 25], [28, 25], [2205, 25], [2206, 25], [2278, 25]]);
const AS_TEXT_ARRAY = new Map([[1002, 1009], [1003, 1009], [2210, 1009], [2211, 1009]]);

export function relabelResult(result, parseArray) {
  if (!result || !Array.isArray(result.fields)) return result;
  result.fields.forEach((field, column) => {
    const text = AS_TEXT.get(field.dataTypeID);
    const array = AS_TEXT_ARRAY.get(field.dataTypeID);
    if (text === undefined && array === undefined) return;
    field.dataTypeID = text ?? array;
    for (const row of result.rows ?? []) {
      const key = Array.isArray(row) ? column : field.name;
      const value = row[key];
      if (value === null || value === undefined) continue;
      if (array !== undefined) row[key] = typeof value === 'string' ? parseArray(value) : value.map(String);
      else if (typeof value !== 'string') row[key] = String(value);
    }
  });
  return result;
}

function relabelClient(client, parseArray) {
  const query = client.query.bind(client);
  client.query = (...args) => {
    const last = args[args.length - 1];
    if (typeof last === 'function') {
      args[args.length - 1] = (error, result) => last(error, error ? result : relabelResult(result, parseArray));
      return query(...args);
    }
    const answer = query(...args);
    return answer && typeof answer.then === 'function' ? answer.then((result) => relabelResult(result, parseArray)) : answer;
  };
}

// ------------------------------------------------------------------------------------------
// GraphQL as prisma-client-py writes it (its query builder): a tokenizer and a parser.

export function tokenize(source) {
  const tokens = [];
  const pattern = /\s+|,|([{}()[\]:])|("(?:[^"\\]|\\.)*")|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|([A-Za-z_][A-Za-z0-9_]*)/y;
  let index = 0;
  while (index < source.length) {
    pattern.lastIndex = index;
    const match = pattern.exec(source);
    if (!match) throw new Error(`cannot read the query at offset ${index}: ${source.slice(index, index + 30)}`);
    index = pattern.lastIndex;
    if (match[1]) tokens.push({ kind: 'punct', value: match[1] });
    else if (match[2]) tokens.push({ kind: 'value', value: JSON.parse(match[2]) });
    else if (match[3]) tokens.push({ kind: 'value', value: Number(match[3]), text: match[3] });
    else if (match[4]) {
      const word = match[4];
      if (word === 'true' || word === 'false') tokens.push({ kind: 'value', value: word === 'true' });
      else if (word === 'null') tokens.push({ kind: 'value', value: null });
      else tokens.push({ kind: 'name', value: word });
    }
  }
  return tokens;
}

class Parser {
  constructor(tokens) {
    this.tokens = tokens;
    this.at = 0;
  }

  peek() {
    return this.tokens[this.at];
  }

  isPunct(value) {
    const token = this.peek();
    return token !== undefined && token.kind === 'punct' && token.value === value;
  }

  expectPunct(value) {
    const token = this.tokens[this.at++];
    if (!token || token.kind !== 'punct' || token.value !== value) {
      throw new Error(`expected '${value}', found ${token ? JSON.stringify(token.value) : 'the end'}`);
    }
  }

  name() {
    const token = this.tokens[this.at++];
    if (!token || token.kind !== 'name') throw new Error(`expected a name, found ${token ? JSON.stringify(token.value) : 'the end'}`);
    return token.value;
  }

  // operation { result: action (args) { selection } }
  document() {
    const operation = this.name();
    this.expectPunct('{');
    const alias = this.name();
    this.expectPunct(':');
    const action = this.name();
    const args = this.isPunct('(') ? this.arguments() : {};
    const selection = this.isPunct('{') ? this.selection() : null;
    this.expectPunct('}');
    if (this.at !== this.tokens.length) throw new Error('unexpected text after the query');
    return { operation, alias, action, args, selection };
  }

  arguments() {
    this.expectPunct('(');
    const args = {};
    while (!this.isPunct(')')) {
      const key = this.name();
      this.expectPunct(':');
      args[key] = this.value();
    }
    this.expectPunct(')');
    return args;
  }

  value() {
    if (this.isPunct('{')) {
      this.at++;
      const object = {};
      while (!this.isPunct('}')) {
        const key = this.name();
        this.expectPunct(':');
        object[key] = this.value();
      }
      this.at++;
      return object;
    }
    if (this.isPunct('[')) {
      this.at++;
      const list = [];
      while (!this.isPunct(']')) list.push(this.value());
      this.at++;
      return list;
    }
    const token = this.tokens[this.at++];
    if (!token || token.kind === 'punct') throw new Error(`expected a value, found ${token ? JSON.stringify(token.value) : 'the end'}`);
    return token.value; // an enum value written as a bare name arrives as its string
  }

  // { field  relation { ... }  relation(args) { ... } }
  selection() {
    this.expectPunct('{');
    const fields = [];
    while (!this.isPunct('}')) {
      const name = this.name();
      const args = this.isPunct('(') ? this.arguments() : null;
      const nested = this.isPunct('{') ? this.selection() : null;
      fields.push({ name, args, nested });
    }
    this.expectPunct('}');
    return fields;
  }
}

export function parseGraphQL(source) {
  return new Parser(tokenize(source)).document();
}

// ------------------------------------------------------------------------------------------
// GraphQL request -> JSON protocol request.

const ACTIONS = [
  'findUnique', 'findFirst', 'findMany', 'createOne', 'createMany', 'updateOne', 'updateMany',
  'deleteOne', 'deleteMany', 'upsertOne', 'aggregate', 'groupBy',
];
const RAW_ACTIONS = new Set(['queryRaw', 'executeRaw']);
const TAGGED_TYPES = new Set(['DateTime', 'Json', 'BigInt', 'Decimal', 'Bytes']);
// Arguments whose values name fields or directions, never carry field values.
const UNTYPED_ARGUMENTS = new Set(['orderBy', 'by', 'distinct', 'take', 'skip', 'skipDuplicates']);
// Json filter keys whose values are paths or plain strings, not Json values.
const JSON_PLAIN_KEYS = new Set(['path', 'string_contains', 'string_starts_with', 'string_ends_with', 'mode']);

export function splitAction(name, modelNames) {
  if (RAW_ACTIONS.has(name)) return { action: name, modelName: undefined };
  for (const action of ACTIONS) {
    if (!name.startsWith(action)) continue;
    let rest = name.slice(action.length);
    let suffix = '';
    if (rest.endsWith('OrThrow') && !modelNames.has(rest)) {
      rest = rest.slice(0, -'OrThrow'.length);
      suffix = 'OrThrow';
    }
    if (modelNames.has(rest)) return { action: action + suffix, modelName: rest };
  }
  throw new Error(`unknown operation ${name}`);
}

function tagScalar(value, type) {
  if (value === null || value === undefined) return value;
  if (Array.isArray(value)) return value.map((item) => tagScalar(item, type));
  if (typeof value === 'object') {
    const out = {};
    for (const [key, inner] of Object.entries(value)) {
      out[key] = type === 'Json' && JSON_PLAIN_KEYS.has(key) ? inner : tagScalar(inner, type);
    }
    return out;
  }
  if (type === 'BigInt' || type === 'Decimal') return { $type: type, value: String(value) };
  if (typeof value !== 'string') return value; // e.g. a boolean operand; the engine judges it
  return { $type: type, value };
}

export function tagArguments(value, model, schema) {
  if (Array.isArray(value)) return value.map((item) => tagArguments(item, model, schema));
  if (value === null || typeof value !== 'object') return value;
  const fields = schema.models.get(model) ?? new Map();
  const out = {};
  for (const [key, inner] of Object.entries(value)) {
    const field = fields.get(key);
    if (UNTYPED_ARGUMENTS.has(key)) out[key] = inner;
    else if (!field) out[key] = tagArguments(inner, model, schema); // where, data, AND, connect ...
    else if (field.relation) out[key] = tagArguments(inner, field.type, schema);
    else if (TAGGED_TYPES.has(field.type)) out[key] = tagScalar(inner, field.type);
    else out[key] = inner;
  }
  return out;
}

function selectionToJson(fields, model, schema) {
  if (fields === null) return { $scalars: true };
  const out = {};
  const relations = schema.models.get(model) ?? new Map();
  for (const { name, args, nested } of fields) {
    if (args === null && nested === null) {
      out[name] = true;
      continue;
    }
    const related = relations.get(name)?.relation ? relations.get(name).type : model;
    const entry = { selection: selectionToJson(nested ?? [], related, schema) };
    if (args !== null) entry.arguments = tagArguments(args, related, schema);
    out[name] = entry;
  }
  return out;
}

export function toJsonProtocol(source, schema) {
  const document = parseGraphQL(source);
  const { action, modelName } = splitAction(document.action, new Set(schema.models.keys()));
  const args = RAW_ACTIONS.has(action) ? document.args : tagArguments(document.args, modelName, schema);
  const request = { action, query: { arguments: args, selection: selectionToJson(document.selection, modelName, schema) } };
  if (modelName !== undefined) request.modelName = modelName;
  return { request, alias: document.alias };
}

// ------------------------------------------------------------------------------------------
// JSON protocol answer -> what the GraphQL engine answered.

export function untag(value) {
  if (Array.isArray(value)) return value.map(untag);
  if (value === null || typeof value !== 'object') return value;
  if (typeof value.$type === 'string' && 'value' in value && Object.keys(value).length === 2) {
    if (value.$type === 'BigInt') {
      const number = Number(value.value);
      return Number.isSafeInteger(number) ? number : value.value;
    }
    return value.value; // DateTime: ISO text; Json: its JSON text; Decimal, Bytes: text
  }
  const out = {};
  for (const [key, inner] of Object.entries(value)) out[key] = untag(inner);
  return out;
}

function renameResult(answer, alias) {
  if (!answer || typeof answer !== 'object' || !answer.data) return answer;
  const values = Object.values(answer.data);
  return { ...answer, data: { [alias]: untag(values.length === 1 ? values[0] : null) } };
}

function errorAnswer(message) {
  return { errors: [{ error: message, user_facing_error: { is_panic: false, message, meta: {} } }] };
}

// ------------------------------------------------------------------------------------------
// The HTTP server.

function readBody(request) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    request.on('data', (chunk) => chunks.push(chunk));
    request.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    request.on('error', reject);
  });
}

function send(response, status, body) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  response.end(text);
}

async function handleQuery(engine, schema, body, txId) {
  let parsed;
  try {
    parsed = JSON.parse(body);
  } catch {
    return errorAnswer('the request body is not JSON');
  }
  if (Array.isArray(parsed.batch)) {
    let converted;
    try {
      converted = parsed.batch.map((item) => toJsonProtocol(item.query, schema));
    } catch (error) {
      return errorAnswer(`query-engine shim: ${error.message}`);
    }
    const batch = { batch: converted.map((item) => item.request) };
    if (parsed.transaction) batch.transaction = {};
    const answer = JSON.parse(await engine.query(JSON.stringify(batch), '{}', txId));
    if (Array.isArray(answer.batchResult)) {
      answer.batchResult = answer.batchResult.map((item, index) => renameResult(item, converted[index].alias));
    }
    return answer;
  }
  let converted;
  try {
    converted = toJsonProtocol(parsed.query, schema);
  } catch (error) {
    return errorAnswer(`query-engine shim: ${error.message}`);
  }
  const answer = JSON.parse(await engine.query(JSON.stringify(converted.request), '{}', txId));
  return renameResult(answer, converted.alias);
}

async function route(engine, schema, request, response) {
  const url = new URL(request.url, 'http://localhost');
  const body = await readBody(request);
  if (request.method === 'GET' && url.pathname === '/status') return send(response, 200, { status: 'ok' });
  if (request.method === 'GET' && url.pathname === '/metrics') {
    if (url.searchParams.get('format') === 'prometheus') return send(response, 200, '');
    return send(response, 200, { counters: [], gauges: [], histograms: [] });
  }
  if (request.method !== 'POST') return send(response, 404, errorAnswer(`no route ${request.method} ${url.pathname}`));
  if (url.pathname === '/') {
    const txId = request.headers['x-transaction-id'];
    return send(response, 200, await handleQuery(engine, schema, body, txId || undefined));
  }
  if (url.pathname === '/transaction/start') {
    return send(response, 200, await engine.startTransaction(body || '{}', '{}'));
  }
  const tx = url.pathname.match(/^\/transaction\/([^/]+)\/(commit|rollback)$/);
  if (tx) {
    const answer = tx[2] === 'commit'
      ? await engine.commitTransaction(tx[1], '{}')
      : await engine.rollbackTransaction(tx[1], '{}');
    return send(response, 200, answer || '{}');
  }
  return send(response, 404, errorAnswer(`no route POST ${url.pathname}`));
}

function portFromArgs(argv) {
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '-p' || argv[i] === '--port') return Number(argv[i + 1]);
  }
  return null;
}

async function main(argv) {
  const glue = await loadEngine();
  if (argv.includes('--version') || argv.includes('-V')) {
    process.stdout.write(`query-engine ${glue.getBuildTimeInfo().commit}\n`);
    return;
  }
  const port = portFromArgs(argv);
  if (!Number.isInteger(port) || port <= 0) fail('usage: query-engine -p PORT');
  const dmlPath = process.env.PRISMA_DML_PATH;
  if (!dmlPath) fail('PRISMA_DML_PATH is not set (the schema.prisma of the generated client)');
  const datamodel = fs.readFileSync(dmlPath, 'utf8');
  const schema = parseSchema(datamodel);

  const require = createRequire(path.join(MODULES, 'noop.js'));
  const pg = (await import(pathToFileURL(require.resolve('pg')).href)).default;
  const { PrismaPg } = await import(pathToFileURL(require.resolve('@prisma/adapter-pg')).href);
  const { bindAdapter } = await import(pathToFileURL(require.resolve('@prisma/driver-adapter-utils')).href);
  const { config, schema: pgSchema } = poolConfig(resolveDatasourceUrl(schema));
  const { parse: parseArray } = await import(pathToFileURL(require.resolve('postgres-array')).href);
  const pool = new pg.Pool(config);
  pool.on('connect', (client) => relabelClient(client, parseArray));
  const adapter = bindAdapter(new PrismaPg(pool, pgSchema ? { schema: pgSchema } : undefined));
  const logs = (line) => {
    if (process.env.LOG_QUERIES || /"level":"(error|ERROR)"/.test(line)) process.stderr.write(`${line}\n`);
  };
  const engine = new glue.QueryEngine({ datamodel, logLevel: 'error', logQueries: Boolean(process.env.LOG_QUERIES) }, logs, adapter);
  await engine.connect('{}');

  const server = http.createServer((request, response) => {
    route(engine, schema, request, response).catch((error) => {
      send(response, 500, errorAnswer(`query-engine shim: ${error && error.message ? error.message : String(error)}`));
    });
  });
  server.keepAliveTimeout = 60_000;
  server.listen(port, '127.0.0.1');

  const stop = async () => {
    server.close();
    try {
      await engine.disconnect('{}');
      await pool.end();
    } finally {
      process.exit(0);
    }
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  // An engine left behind by a killed client would hold database connections: follow the parent.
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) stop();
  }, 1000).unref();
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).catch((error) => fail(error && error.stack ? error.stack : String(error)));
}
