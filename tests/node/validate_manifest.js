// Validates Teams app manifests offline with @microsoft/app-manifest's bundled JSON schemas.
//
// Usage: node tests/node/validate_manifest.js [--json] manifest.json...
// Prints "<file>: OK" or "<file>: INVALID (n errors)" plus one line per error; with --json, one JSON object
// {"<file>": [errors...]} instead. Exit 0 when all are valid, 1 when any is invalid, 2 when it cannot run.
//
// The library downloads the schema named by "$schema" when it has no bundled copy (v1.18 is missing, see
// reference/toolchain.md §5), so fetch is replaced by a function that throws: a pass here proves nothing was fetched.
'use strict';

const fs = require('fs');
const Module = require('module');
const path = require('path');

globalThis.fetch = async (url) => {
  throw new Error(`NETWORK USED: ${url}`);
};

// @microsoft/app-manifest 1.1.2 requires fs-extra at run time but declares it only as a devDependency, so a clean
// `npm ci` of this repo lacks it. The validation path uses two calls (pathExists and readFile, to load the bundled
// schema); when fs-extra is absent they are served from node:fs. With fs-extra installed this does nothing.
function provideFsExtraIfMissing(libraryEntry) {
  try {
    require.resolve('fs-extra', { paths: [path.dirname(libraryEntry)] });
    return;
  } catch {
    // fall through to the stand-in
  }
  const id = path.join(__dirname, 'fs-extra (node:fs stand-in)');
  const standIn = new Module(id);
  standIn.exports = {
    pathExists: (file) => fs.promises.access(file).then(() => true, () => false),
    readFile: (file, options) => fs.promises.readFile(file, options),
  };
  standIn.loaded = true;
  require.cache[id] = standIn;
  const resolve = Module._resolveFilename;
  Module._resolveFilename = function resolveFsExtra(request, ...rest) {
    return request === 'fs-extra' ? id : resolve.call(this, request, ...rest);
  };
}

let AppManifestUtils;
try {
  const entry = require.resolve('@microsoft/app-manifest');
  provideFsExtraIfMissing(entry);
  ({ AppManifestUtils } = require(entry));
} catch (error) {
  process.stderr.write(`@microsoft/app-manifest cannot be loaded (${error.message}): run scripts/bootstrap\n`);
  process.exit(2);
}

async function validate(path) {
  // Raw JSON on purpose: readTeamsManifest() runs a strict type converter that throws on the first problem
  // instead of listing every schema error.
  const manifest = JSON.parse(fs.readFileSync(path, 'utf8').replace(/^\uFEFF/, ''));
  return AppManifestUtils.validateAgainstSchema(manifest);
}

async function main(argv) {
  const asJson = argv.includes('--json');
  const files = argv.filter((arg) => arg !== '--json');
  if (files.length === 0) {
    process.stderr.write('usage: validate_manifest.js [--json] manifest.json...\n');
    return 2;
  }
  const results = {};
  for (const file of files) {
    try {
      results[file] = await validate(file);
    } catch (error) {
      // A schema that would need downloading, unreadable JSON: the validator could not do its job.
      process.stderr.write(`${file}: cannot validate: ${error.message}\n`);
      return 2;
    }
  }
  if (asJson) {
    process.stdout.write(`${JSON.stringify(results)}\n`);
  } else {
    for (const [file, errors] of Object.entries(results)) {
      process.stdout.write(errors.length ? `${file}: INVALID (${errors.length} errors)\n` : `${file}: OK\n`);
      for (const error of errors) process.stdout.write(`    ${error}\n`);
    }
  }
  return Object.values(results).some((errors) => errors.length) ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(`${error.stack || error}\n`);
    process.exit(2);
  },
);
