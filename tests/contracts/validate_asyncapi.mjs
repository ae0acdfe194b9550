// Validate AsyncAPI documents with the official parser; prints error diagnostics
// as JSON lines and exits 1 if there are any. Usage: node validate_asyncapi.mjs FILE...
import { readFileSync } from 'node:fs';
import { Parser } from '@asyncapi/parser';

const parser = new Parser();
let failed = false;
for (const file of process.argv.slice(2)) {
  const { document, diagnostics } = await parser.parse(readFileSync(file, 'utf8'));
  const errors = diagnostics.filter((d) => d.severity === 0);
  for (const e of errors) console.log(JSON.stringify({ file, code: e.code, message: e.message, path: e.path }));
  if (!document || errors.length) failed = true;
  else console.log(JSON.stringify({ file, ok: true, channels: document.channels().length }));
}
process.exit(failed ? 1 : 0);
