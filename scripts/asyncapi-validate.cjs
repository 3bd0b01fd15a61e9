// Validates AsyncAPI documents with the official parser (@asyncapi/parser), as installed by
// scripts/ensure-tools.sh. Usage: node scripts/asyncapi-validate.cjs PARSER_DIR FILE...
// PARSER_DIR is the npm prefix holding node_modules/@asyncapi/parser. Prints every
// diagnostic; exits 1 when any file has an error (severity 0), 2 on bad usage.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { createRequire } = require('node:module');

async function main(argv) {
  if (argv.length < 2) {
    console.error('usage: asyncapi-validate.cjs PARSER_DIR FILE...');
    return 2;
  }
  const [prefix, ...files] = argv;
  const requireFromPrefix = createRequire(path.join(path.resolve(prefix), 'package.json'));
  const { Parser } = requireFromPrefix('@asyncapi/parser');
  const parser = new Parser();
  const severities = ['error', 'warning', 'info', 'hint'];
  let failed = false;
  for (const file of files) {
    const source = fs.readFileSync(file, 'utf8');
    const { document, diagnostics } = await parser.parse(source, { source: path.resolve(file) });
    for (const d of diagnostics) {
      const where = (d.path || []).join('.');
      console.log(`${file}: ${severities[d.severity] || d.severity}: ${d.code}: ${d.message} at ${where}`);
    }
    const errors = diagnostics.filter((d) => d.severity === 0).length;
    if (document === undefined || errors > 0) {
      failed = true;
      console.log(`${file}: INVALID (${errors} errors)`);
    } else {
      const channels = document.channels().length;
      const messages = document.components().messages().length;
      console.log(`${file}: valid AsyncAPI ${document.version()}, ${channels} channels, ${messages} component messages`);
    }
  }
  return failed ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(err && err.stack ? err.stack : String(err));
    process.exit(1);
  },
);
