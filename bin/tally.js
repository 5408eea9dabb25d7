#!/usr/bin/env node
// The `tally` command. Runs the compiled dist/ when it exists (published package),
// otherwise the TypeScript sources directly (Node >= 22.18 strips types natively).
import fs from 'node:fs';

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 18)) {
  process.stderr.write(`error: tally needs Node.js 22.18 or newer (this is ${process.version})\n`);
  process.exit(2);
}

const compiled = new URL('../dist/cli/main.js', import.meta.url);
const { main } = await import(fs.existsSync(compiled) ? compiled.href : new URL('../src/cli/main.ts', import.meta.url).href);
process.exitCode = await main(process.argv);
