// The one Node.js version check, for every entry point: the `tally` command, `npm test`
// (its pretest script), `npm run bench` and `npm start`. Plain JavaScript that parses on
// any Node, so an old one gets this one line instead of a syntax error or a crash deep
// inside a dependency.
//   node bin/require-node.js [what]       exits 1 with one line when Node is too old
//   import { requireNode } from './require-node.js'
export const MIN_NODE = '22.22.0';

/** True when `version` (e.g. process.versions.node) is at least MIN_NODE. */
export function nodeIsRecentEnough(version = process.versions.node) {
  const have = version.split('.').map(Number);
  const need = MIN_NODE.split('.').map(Number);
  for (let i = 0; i < need.length; i += 1) {
    if ((have[i] ?? 0) !== need[i]) return (have[i] ?? 0) > need[i];
  }
  return true;
}

/** Exits the process with one line on stderr when Node is older than MIN_NODE. */
export function requireNode(what = 'tally') {
  if (nodeIsRecentEnough()) return;
  const installed = import.meta.url.split('/').includes('node_modules');
  const fix = installed
    ? 'the app that installed Tally must run on that Node or newer: install it (nvm, fnm, or the `node` package as a dependency of the app)'
    : process.env.npm_lifecycle_event
    ? 'npm runs scripts with node_modules/.bin first on PATH, where `npm install` puts the Node this project pins: run `npm install` (with install scripts allowed) and try again'
    : 'run it through npm (npm start, npm test, npx tally), which uses the Node that `npm install` put in node_modules/.bin, or install a newer Node';
  process.stderr.write(`error [node_too_old]: ${what} needs Node.js ${MIN_NODE} or newer, and this is ${process.version} (${process.execPath}): ${fix}.\n`);
  process.exit(1);
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  requireNode(process.argv[2]);
}
