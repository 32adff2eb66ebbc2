// Validate a Roo Code import file the way the extension's import does (zod schemas from
// @roo-code/types), and fail on keys the schemas would silently drop.
// usage: node validate_roo.cjs <roo-types-dir> <import-file.json>
"use strict";
const path = require("path");
const fs = require("fs");
const { createRequire } = require("module");

const [typesDir, file] = process.argv.slice(2);
const req = createRequire(path.join(path.resolve(typesDir), "package.json"));
const types = req("@roo-code/types");
const { z } = req("zod");

const providerProfiles = z.object({
  currentApiConfigName: z.string(),
  apiConfigs: z.record(z.string(), types.providerSettingsWithIdSchema),
  modeApiConfigs: z.record(z.string(), z.string()).optional(),
});
const importFile = z.object({
  providerProfiles,
  globalSettings: types.globalSettingsSchema.optional(),
});

function dropped(input, output, where) {
  // Every key we wrote must survive parsing: zod's default object() strips unknown keys.
  const lost = [];
  if (input && typeof input === "object" && !Array.isArray(input)) {
    for (const key of Object.keys(input)) {
      if (!(key in (output || {}))) lost.push(where + key);
      else lost.push(...dropped(input[key], output[key], where + key + "."));
    }
  }
  return lost;
}

const doc = JSON.parse(fs.readFileSync(file, "utf8"));
const result = importFile.safeParse(doc);
if (!result.success) {
  console.error(JSON.stringify(result.error.issues, null, 1));
  process.exit(1);
}
const lost = dropped(doc, result.data, "");
if (lost.length) {
  console.error("keys dropped by the schema: " + lost.join(", "));
  process.exit(2);
}
const profiles = doc.providerProfiles;
const ids = new Set(Object.values(profiles.apiConfigs).map((c) => c.id));
for (const [mode, id] of Object.entries(profiles.modeApiConfigs || {})) {
  if (!ids.has(id)) {
    console.error(`modeApiConfigs.${mode} points at ${id}, which is no apiConfigs id`);
    process.exit(3);
  }
}
if (!(profiles.currentApiConfigName in profiles.apiConfigs)) {
  console.error("currentApiConfigName names no profile");
  process.exit(3);
}
console.log("valid");
