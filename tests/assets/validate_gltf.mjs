// Print the Khronos glTF validator's report for one .glb/.gltf file as JSON on stdout.
// Usage: node validate_gltf.mjs FILE   (gltf-validator must be installed in the repository's node_modules)
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";

const file = process.argv[2];
if (!file) {
  console.error("usage: node validate_gltf.mjs FILE");
  process.exit(2);
}
// Resolve the package from the current working directory (the repository root), not from this script's folder.
const require = createRequire(path.join(process.cwd(), "noop.js"));
const validator = require("gltf-validator");
const bytes = new Uint8Array(await readFile(file));
const report = await validator.validateBytes(bytes, {
  uri: path.basename(file),
  maxIssues: 100,
  externalResourceFunction: async (uri) =>
    new Uint8Array(await readFile(path.resolve(path.dirname(file), decodeURIComponent(uri)))),
});
console.log(JSON.stringify(report));
