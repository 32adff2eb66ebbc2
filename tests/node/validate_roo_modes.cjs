// Validate the custom modes of a Roo Code import file with the schemas of @roo-code/types: the
// whole file the way the extension's import parses it, each mode with modeConfigSchema, the list
// with customModesSettingsSchema (unique slugs), and fail on any key the schemas would drop.
// usage: node validate_roo_modes.cjs <roo-types-dir> <import-file.json>
// prints {"modes": [slugs], "modeApiConfigs": {...}} on success.
"use strict";
const path = require("path");
const fs = require("fs");
const { createRequire } = require("module");

const [typesDir, file] = process.argv.slice(2);
const req = createRequire(path.join(path.resolve(typesDir), "package.json"));
const types = req("@roo-code/types");
const { z } = req("zod");

function fail(code, message) {
  console.error(message);
  process.exit(code);
}

function lostKeys(input, output, where) {
  const lost = [];
  if (input && typeof input === "object" && !Array.isArray(input)) {
    for (const key of Object.keys(input)) {
      if (!output || !(key in output)) lost.push(where + key);
      else lost.push(...lostKeys(input[key], output[key], where + key + "."));
    }
  }
  return lost;
}

const doc = JSON.parse(fs.readFileSync(file, "utf8"));
const whole = z
  .object({
    providerProfiles: z.object({
      currentApiConfigName: z.string(),
      apiConfigs: z.record(z.string(), types.providerSettingsWithIdSchema),
      modeApiConfigs: z.record(z.string(), z.string()).optional(),
    }),
    globalSettings: types.globalSettingsSchema.optional(),
  })
  .safeParse(doc);
if (!whole.success) fail(1, "import file: " + JSON.stringify(whole.error.issues));

const modes = (doc.globalSettings || {}).customModes;
if (!Array.isArray(modes) || modes.length === 0) fail(2, "no globalSettings.customModes");
const listed = types.customModesSettingsSchema.safeParse({ customModes: modes });
if (!listed.success) fail(1, "customModes: " + JSON.stringify(listed.error.issues));
modes.forEach((mode, i) => {
  const one = types.modeConfigSchema.safeParse(mode);
  if (!one.success) fail(1, `customModes[${i}]: ` + JSON.stringify(one.error.issues));
  const lost = lostKeys(mode, one.data, `customModes[${i}].`);
  if (lost.length) fail(2, "keys dropped by modeConfigSchema: " + lost.join(", "));
});
const lost = lostKeys(doc.globalSettings, whole.data.globalSettings, "globalSettings.");
if (lost.length) fail(2, "keys dropped by globalSettingsSchema: " + lost.join(", "));
const ids = new Set(Object.values(doc.providerProfiles.apiConfigs).map((c) => c.id));
for (const mode of modes) {
  const id = (doc.providerProfiles.modeApiConfigs || {})[mode.slug];
  if (!ids.has(id)) fail(3, `mode ${mode.slug} is mapped to ${id}, which is no apiConfigs id`);
}
console.log(JSON.stringify({ modes: modes.map((m) => m.slug), modeApiConfigs: doc.providerProfiles.modeApiConfigs }));
