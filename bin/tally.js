#!/usr/bin/env node
// The `tally` command. Installed as a dependency (under node_modules) it runs the compiled
// dist/; in a checkout it runs the TypeScript sources directly (Node strips their types),
// so an edit needs no build step.
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { requireNode } from './require-node.js';

requireNode('tally');

const here = fs.realpathSync(fileURLToPath(import.meta.url));
const sources = new URL('../src/cli/main.ts', import.meta.url);
const useSources = !here.split(/[\\/]/).includes('node_modules') && fs.existsSync(sources);
const entry = useSources ? sources : new URL('../dist/cli/main.js', import.meta.url);
const { main } = await import(entry.href);
process.exitCode = await main(process.argv);
