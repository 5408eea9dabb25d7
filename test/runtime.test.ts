/**
 * The Node.js the project runs on: one minimum (bin/require-node.js) that package.json's
 * engines, the pinned `node` dependency and every entry point agree on, and an old Node
 * (the machine's own, when it is older) gets one line with a code instead of a crash.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { MIN_NODE, nodeIsRecentEnough } from '../bin/require-node.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const pkg = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  engines: { node: string };
  devDependencies: Record<string, string>;
  allowScripts: Record<string, boolean>;
  scripts: Record<string, string>;
};

/** The machine's own node, when it is older than the minimum (it is 20 on the CI machine). */
const oldNode = ['/usr/bin/node', '/usr/local/bin/node'].find((bin) => {
  if (!fs.existsSync(bin)) return false;
  const version = spawnSync(bin, ['-p', 'process.versions.node'], { encoding: 'utf8' }).stdout.trim();
  return version !== '' && !nodeIsRecentEnough(version);
});

describe('the Node.js runtime', () => {
  it('one minimum: engines, the pinned node dependency (install script allowed) and the check agree', () => {
    expect(pkg.engines.node).toBe(`>=${MIN_NODE}`);
    expect(nodeIsRecentEnough(pkg.devDependencies.node)).toBe(true);
    expect(pkg.allowScripts.node).toBe(true);
    expect(nodeIsRecentEnough(process.versions.node)).toBe(true);
    expect(pkg.scripts.pretest).toContain('bin/require-node.js');
    expect(pkg.scripts.prebench).toContain('bin/require-node.js');
  });

  it.each([
    ['22.21.9', false],
    ['22.22.0', true],
    ['22.23.3', true],
    ['20.20.2', false],
    ['23.0.0', true],
    ['24.1.0', true],
  ])('node %s is recent enough: %s', (version, ok) => {
    expect(nodeIsRecentEnough(version)).toBe(ok);
  });

  it.skipIf(!oldNode)('an old Node gets one line with a code from tally and from npm test, not a crash', () => {
    const tally = spawnSync(oldNode!, ['bin/tally.js', '--version'], { cwd: ROOT, encoding: 'utf8' });
    expect(tally.status).toBe(1);
    expect(tally.stdout).toBe('');
    expect(tally.stderr.trim().split('\n')).toHaveLength(1);
    expect(tally.stderr).toMatch(/^error \[node_too_old\]: tally needs Node\.js 22\.22\.0 or newer, and this is v\d+/);

    const pretest = spawnSync(oldNode!, ['bin/require-node.js', 'npm test'], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, npm_lifecycle_event: 'pretest' } });
    expect(pretest.status).toBe(1);
    expect(pretest.stderr.trim().split('\n')).toHaveLength(1);
    expect(pretest.stderr).toMatch(/^error \[node_too_old\]: npm test needs Node\.js 22\.22\.0 or newer.*run `npm install`/);
  });
});
