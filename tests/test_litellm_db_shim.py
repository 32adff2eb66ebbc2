"""tests/litellm_db/query_engine.mjs, its pure parts: prisma-client-py's GraphQL read and turned
into Prisma's JSON protocol (with values tagged from the schema), answers turned back, and raw
results of types the driver adapter does not know relabelled as text. Run with the system
`node`; the whole program against a real proxy and database is tests/test_litellm_db.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import REPO
from tests.heavy import missing

# Left out of `scripts/test --fast`: the shim runs in a node process.
pytestmark = pytest.mark.slow

SHIM = REPO / "tests" / "litellm_db" / "query_engine.mjs"

SCHEMA = """
datasource client {
  provider = "postgresql"
  url      = env("DATABASE_URL")
}

model Key {
  token      String    @id
  spend      Float     @default(0.0)
  expires    DateTime?
  metadata   Json      @default("{}")
  tpm_limit  BigInt?
  price      Decimal?
  created_at DateTime  @default(now()) // a comment
  budget_id  String?
  budget     Budget?   @relation(fields: [budget_id], references: [budget_id])
}

model Budget {
  budget_id  String   @id
  reset_at   DateTime?
  keys       Key[]
}
"""

# Node reads {"op", "input"} lines and prints one JSON result (or {"error"}) per line.
HARNESS = """
import * as shim from %s;
import readline from 'node:readline';
const schema = shim.parseSchema(%s);
const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  const { op, input } = JSON.parse(line);
  try {
    let out;
    if (op === 'convert') out = shim.toJsonProtocol(input, schema);
    else if (op === 'untag') out = shim.untag(input);
    else if (op === 'relabel') out = shim.relabelResult(input, (t) => t.slice(1, -1).split(','));
    else if (op === 'pool') out = shim.poolConfig(input);
    console.log(JSON.stringify({ out }));
  } catch (error) {
    console.log(JSON.stringify({ error: error.message }));
  }
}
"""


class Harness:
    """One node process for the module, answering a line per request."""

    def __init__(self) -> None:
        node = shutil.which("node")
        if node is None:
            missing("node (to run tests/litellm_db/query_engine.mjs)", "install Node.js")
        script = HARNESS % (json.dumps(SHIM.as_uri()), json.dumps(SCHEMA))
        self.process = subprocess.Popen([node, "--input-type=module", "-e", script], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def call(self, op: str, value: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"op": op, "input": value}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, self.process.stderr.read() if self.process.stderr else "node exited"
        return json.loads(line)

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=30)


_HARNESS: list[Harness] = []


@pytest.fixture(scope="module", autouse=True)
def harness() -> Iterator[Harness]:
    running = Harness()
    _HARNESS.append(running)
    try:
        yield running
    finally:
        _HARNESS.remove(running)
        running.close()


def run(*calls: tuple[str, Any]) -> list[dict[str, Any]]:
    return [_HARNESS[-1].call(op, value) for op, value in calls]


def convert(query: str) -> dict[str, Any]:
    [answer] = run(("convert", query))
    assert "out" in answer, answer
    return answer["out"]


def test_find_unique_with_its_selection() -> None:
    out = convert('query {\n  result: findUniqueKey\n  (\n    where: {\n      token: "abc"\n    }\n  )\n'
                  '  {\n    token\n    spend\n  }\n}')
    assert out == {"alias": "result", "request": {
        "action": "findUnique", "modelName": "Key",
        "query": {"arguments": {"where": {"token": "abc"}}, "selection": {"token": True, "spend": True}}}}


@pytest.mark.parametrize(
    ("name", "action", "model"),
    [
        ("findUniqueKeyOrThrow", "findUniqueOrThrow", "Key"),
        ("findFirstBudget", "findFirst", "Budget"),
        ("createManyKey", "createMany", "Key"),
        ("upsertOneBudget", "upsertOne", "Budget"),
        ("aggregateKey", "aggregate", "Key"),
        ("groupByKey", "groupBy", "Key"),
        ("deleteManyKey", "deleteMany", "Key"),
    ],
)
def test_operation_names_split_into_action_and_model(name: str, action: str, model: str) -> None:
    request = convert(f"mutation {{\n  result: {name}\n}}")["request"]
    assert (request["action"], request["modelName"]) == (action, model)


def test_values_are_tagged_by_the_schemas_field_types() -> None:
    data = ('{\n  token: "k"\n  metadata: "{\\"coder_workspace\\": \\"w\\"}"\n'
            '  expires: "2030-01-02T03:04:05+00:00"\n  tpm_limit: 100\n  price: "1.50"\n  spend: 0.5\n}')
    args = convert(f"mutation {{\n  result: createOneKey\n  (\n    data: {data}\n  )\n}}")["request"]["query"]["arguments"]
    assert args["data"] == {
        "token": "k",
        "metadata": {"$type": "Json", "value": '{"coder_workspace": "w"}'},
        "expires": {"$type": "DateTime", "value": "2030-01-02T03:04:05+00:00"},
        "tpm_limit": {"$type": "BigInt", "value": "100"},
        "price": {"$type": "Decimal", "value": "1.50"},
        "spend": 0.5,
    }


def test_filters_relations_and_ordering() -> None:
    query = """query {
  result: findManyKey
  (
    take: 5
    where: {
      OR: [
        {
          expires: null
        },
        {
          expires: {
            gt: "2026-01-01T00:00:00+00:00"
          }
        }]
      NOT: {
        created_at: null
      }
      metadata: {
        path: [
          "coder_workspace"
        ]
        equals: "\\"w\\""
      }
      budget: {
        is: {
          reset_at: {
            lt: "2026-02-01T00:00:00+00:00"
          }
        }
      }
    }
    orderBy: [
      {
        created_at: "desc"
      }]
  )
  {
    token
    budget {
      budget_id
    }
    _count {
      _all
    }
  }
}"""
    request = convert(query)["request"]
    args = request["query"]["arguments"]
    when = {"$type": "DateTime", "value": "2026-01-01T00:00:00+00:00"}
    assert args["where"]["OR"] == [{"expires": None}, {"expires": {"gt": when}}]
    assert args["where"]["NOT"] == {"created_at": None}
    assert args["where"]["metadata"] == {"path": ["coder_workspace"], "equals": {"$type": "Json", "value": '"w"'}}
    assert args["where"]["budget"]["is"]["reset_at"]["lt"]["$type"] == "DateTime"  # the related model's field
    assert args["orderBy"] == [{"created_at": "desc"}]  # a direction, not a date
    assert args["take"] == 5
    assert request["query"]["selection"] == {
        "token": True, "budget": {"selection": {"budget_id": True}}, "_count": {"selection": {"_all": True}}}


def test_relation_with_arguments_in_the_selection() -> None:
    query = ('query {\n  result: findManyBudget\n  {\n    budget_id\n    keys(\n      where: {\n'
             '        expires: {\n          lt: "2026-01-01T00:00:00+00:00"\n        }\n      }\n    )\n'
             '    {\n      token\n    }\n  }\n}')
    keys = convert(query)["request"]["query"]["selection"]["keys"]
    assert keys == {"selection": {"token": True}, "arguments": {
        "where": {"expires": {"lt": {"$type": "DateTime", "value": "2026-01-01T00:00:00+00:00"}}}}}


def test_raw_queries_pass_their_parameters_as_written() -> None:
    request = convert('mutation {\n  result: queryRaw\n  (\n    query: "SELECT $1"\n'
                      '    parameters: "[\\"2026-01-01T00:00:00+00:00\\"]"\n  )\n}')["request"]
    assert "modelName" not in request
    assert request["query"]["arguments"] == {"query": "SELECT $1", "parameters": '["2026-01-01T00:00:00+00:00"]'}


@pytest.mark.parametrize(
    "query",
    ["", "query {", "query { result: findManyNothing }", "query { result: findManyKey ( where: ) }",
     'query { result: findManyKey } trailing', "query { result: findManyKey ( take: 5 ] ) }"],
)
def test_queries_it_cannot_read_are_errors_with_a_reason(query: str) -> None:
    [answer] = run(("convert", query))
    assert "out" not in answer and answer["error"]


def test_answers_come_back_untagged_as_the_graphql_engine_gave_them() -> None:
    [answer] = run(("untag", {"token": "k", "expires": {"$type": "DateTime", "value": "2030-01-02T03:04:05.000Z"},
                              "metadata": {"$type": "Json", "value": '{"a":1}'},
                              "tpm_limit": {"$type": "BigInt", "value": "100"},
                              "huge": {"$type": "BigInt", "value": "9007199254740993"},
                              "price": {"$type": "Decimal", "value": "1.5"},
                              "rows": [{"at": {"$type": "DateTime", "value": "2030-01-01T00:00:00.000Z"}}]}))
    assert answer["out"] == {"token": "k", "expires": "2030-01-02T03:04:05.000Z", "metadata": '{"a":1}',
                             "tpm_limit": 100, "huge": "9007199254740993", "price": "1.5",
                             "rows": [{"at": "2030-01-01T00:00:00.000Z"}]}


def test_raw_results_of_unknown_types_become_text() -> None:
    result = {"fields": [{"name": "n", "dataTypeID": 20}, {"name": "names", "dataTypeID": 1003},
                         {"name": "view", "dataTypeID": 19}, {"name": "done", "dataTypeID": 2278}],
              "rows": [["1", "{a,b}", "v", ""], ["2", None, "w", None]]}
    [answer] = run(("relabel", result))
    assert [f["dataTypeID"] for f in answer["out"]["fields"]] == [20, 1009, 25, 25]
    assert answer["out"]["rows"] == [["1", ["a", "b"], "v", ""], ["2", None, "w", None]]


def test_prisma_url_parameters_become_pool_settings() -> None:
    url = ("postgresql://u@127.0.0.1:5432/db?connection_limit=7&pool_timeout=3"
           "&options=-c%20statement_timeout%3D5000&schema=public&sslmode=disable")
    [answer] = run(("pool", url))
    config = answer["out"]["config"]
    assert config["max"] == 7 and config["options"] == "-c statement_timeout=5000"
    assert config["connectionString"] == "postgresql://u@127.0.0.1:5432/db?sslmode=disable"
    assert answer["out"]["schema"] == "public"
