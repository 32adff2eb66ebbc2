// Check a Zoo Code import file the way Zoo Code's auto-import treats it, with the zod schemas of
// @roo-code/types (the package Zoo Code builds its schemas from).
//
// What Zoo Code 3.82 does (read from Zoo-Code-Org/Zoo-Code, src/core/config/importExport.ts and
// src/utils/autoImportSettings.ts): the file must parse as JSON with a `providerProfiles` object
// (currentApiConfigName, apiConfigs, optional modeApiConfigs), else the whole import fails. Then
// each profile is judged on its own (a legacy "roo" provider is downgraded, an unknown provider is
// removed, a profile the provider-settings schema rejects is skipped), the current profile must be
// one that survived, and each `globalSettings` key is judged on its own against its schema (an
// unknown key or a bad value is skipped). Every such case becomes one "[AutoImport] Warning: …"
// line in the Zoo-Code output channel.
//
// usage: node validate_zoo.cjs <roo-types-dir> <import-file.json>
// exit 0 and "valid": no warning would be logged and no key we wrote would be dropped;
// exit 1: the import would fail; exit 2: warnings (printed as Zoo Code logs them) or dropped keys.
"use strict";
const path = require("path");
const fs = require("fs");
const { createRequire } = require("module");

const [typesDir, file] = process.argv.slice(2);
const req = createRequire(path.join(path.resolve(typesDir), "package.json"));
const types = req("@roo-code/types");
const { z } = req("zod");

const LEGACY_PROVIDER = "roo";

function issues(error) {
  return error.issues.map((i) => `${i.path.join(".") || "value"}: ${i.message}`).join(", ");
}

function isPlainObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

// Keys of `input` that parsing left out of `output` (zod objects strip unknown keys silently).
function droppedKeys(input, output, where) {
  const lost = [];
  if (isPlainObject(input)) {
    for (const key of Object.keys(input)) {
      if (!isPlainObject(output) || !(key in output)) lost.push(where + key);
      else lost.push(...droppedKeys(input[key], output[key], where + key + "."));
    }
  } else if (Array.isArray(input) && Array.isArray(output)) {
    input.forEach((item, i) => lost.push(...droppedKeys(item, output[i], `${where}${i}.`)));
  }
  return lost;
}

function fail(code, lines) {
  for (const line of lines) console.error(line);
  process.exit(code);
}

let doc;
try {
  doc = JSON.parse(fs.readFileSync(file, "utf8"));
} catch (e) {
  fail(1, [`[AutoImport] Failed to import settings: ${e.message}`]);
}

const envelope = z
  .object({
    providerProfiles: z.object({
      currentApiConfigName: z.string(),
      apiConfigs: z.record(z.string(), z.any()),
      modeApiConfigs: z.record(z.string(), z.string()).optional(),
    }),
    globalSettings: z.unknown().optional(),
  })
  .safeParse(doc);
if (!envelope.success) fail(1, [`[AutoImport] Failed to import settings: ${issues(envelope.error)}`]);

const warnings = [];
const dropped = [];
const profiles = doc.providerProfiles;
const kept = {};
for (const [name, raw] of Object.entries(profiles.apiConfigs)) {
  let config = raw;
  if (isPlainObject(raw) && raw.apiProvider === LEGACY_PROVIDER) {
    warnings.push(`Profile "${name}": Roo Code Router was removed. The imported profile was downgraded and needs to be reconfigured.`);
    config = { ...raw };
    delete config.apiProvider;
  } else if (isPlainObject(raw) && raw.apiProvider !== undefined && !types.isProviderName(raw.apiProvider)) {
    warnings.push(`Profile "${name}": Invalid provider "${raw.apiProvider}" was removed. Please reconfigure this profile.`);
    config = { ...raw };
    delete config.apiProvider;
  }
  const parsed = types.providerSettingsWithIdSchema.safeParse(config);
  if (!parsed.success) {
    warnings.push(`Profile "${name}" was skipped: ${issues(parsed.error)}`);
    continue;
  }
  kept[name] = parsed.data;
  dropped.push(...droppedKeys(raw, parsed.data, `providerProfiles.apiConfigs.${name}.`));
}
if (Object.keys(kept).length === 0 && warnings.length > 0) {
  fail(1, ["[AutoImport] Failed to import settings: No valid profiles could be imported:", ...warnings]);
}
if (!(profiles.currentApiConfigName in kept) && Object.keys(kept).length > 0) {
  warnings.push(`Profile "${profiles.currentApiConfigName}" was not available; defaulting to "${Object.keys(kept)[0]}".`);
}

const shape = types.globalSettingsSchema.shape;
const settings = doc.globalSettings;
if (settings !== undefined && !isPlainObject(settings)) {
  warnings.push(`Setting "globalSettings" was skipped: Expected object, received ${Array.isArray(settings) ? "array" : typeof settings}.`);
} else if (settings !== undefined) {
  for (const [key, value] of Object.entries(settings)) {
    const schema = shape[key];
    if (!schema) {
      warnings.push(`Setting "globalSettings.${key}" was skipped: Unknown setting.`);
      continue;
    }
    if (key === "imageGenerationProvider" && value === LEGACY_PROVIDER) {
      warnings.push(`Setting "globalSettings.${key}" used unsupported value "roo" and was cleared during import.`);
      continue;
    }
    const parsed = schema.safeParse(value);
    if (!parsed.success) warnings.push(`Setting "globalSettings.${key}" was skipped: ${issues(parsed.error)}`);
    else dropped.push(...droppedKeys(value, parsed.data, `globalSettings.${key}.`));
  }
}

// Not a Zoo Code warning, but a wrong file all the same: a mode mapped to no imported profile id.
const ids = new Set(Object.values(kept).map((c) => c.id));
const unmapped = Object.entries(profiles.modeApiConfigs || {}).filter(([, id]) => !ids.has(id));

const lines = warnings.map((w) => `[AutoImport] Warning: ${w}`);
if (dropped.length) lines.push("keys dropped silently by the schemas: " + dropped.join(", "));
for (const [mode, id] of unmapped) lines.push(`modeApiConfigs.${mode} points at ${id}, which is no imported profile id`);
if (lines.length) fail(2, warnings.length ? [`[AutoImport] Import completed with ${warnings.length} warning${warnings.length === 1 ? "" : "s"}.`, ...lines] : lines);
console.log("valid");
