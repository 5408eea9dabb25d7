/**
 * Every stable code the TypeScript side can report is listed in docs/errors.md: the codes
 * passed as literals to `new TallyError(…)` and its subclasses (also through `super(…)` and a
 * `code = …` chosen just before), the `error [code]:` lines written by hand (bin/require-node.js),
 * and the fallback codes of the client's error table. (test/error-table.test.ts covers the
 * SQL side: tally.error_codes.)
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_TABLE } from '../src/client/errors.ts';

const root = new URL('..', import.meta.url).pathname;

function sources(dir: string): { file: string; text: string }[] {
  return fs.readdirSync(path.join(root, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => /\.(ts|js)$/.test(f))
    .map((f) => ({ file: `${dir}/${f}`, text: fs.readFileSync(path.join(root, dir, f), 'utf8') }));
}

const quoted = (text: string) => [...text.matchAll(/'([a-z][a-z0-9_]+)'/g)].map((m) => m[1]!);

/** Each code with the first file that uses it. */
function thrownCodes(): Map<string, string> {
  const codes = new Map<string, string>();
  const add = (code: string, file: string) => codes.has(code) || codes.set(code, file);
  for (const { file, text } of [...sources('src'), ...sources('bin')]) {
    // new TallyError('code', …), new DatabaseError(hint ?? (s ? 'a' : 'b'), …): the literals of the first argument
    for (const m of text.matchAll(/new [A-Z]\w*Error\(\s*([^,)`]*)[,)]/g)) for (const c of quoted(m[1]!)) add(c, file);
    for (const m of text.matchAll(/\bsuper\(\s*'([a-z][a-z0-9_]+)'/g)) add(m[1]!, file);
    for (const m of text.matchAll(/\bcode = ([^;]*);/g)) for (const c of quoted(m[1]!)) add(c, file);
    for (const m of text.matchAll(/error \[([a-z][a-z0-9_]+)\]/g)) add(m[1]!, file);
  }
  for (const r of ERROR_TABLE) if (r.fallbackCode) add(r.fallbackCode, 'src/client/errors.ts (ERROR_TABLE)');
  return codes;
}

describe('docs/errors.md', () => {
  it('the collector finds the codes it is meant to find', () => {
    const codes = thrownCodes();
    for (const code of ['schema_outdated', 'node_too_old', 'client_error', 'database_error', 'close_timeout', 'queue_full', 'invalid_usage', 'job_failed', 'embedded_port_busy', 'database_auth_failed']) {
      expect(codes.has(code), code).toBe(true);
    }
  });

  it('lists every code thrown in src/ and bin/', () => {
    const doc = fs.readFileSync(path.join(root, 'docs/errors.md'), 'utf8');
    const missing = [...thrownCodes()].filter(([code]) => !doc.includes(`\`${code}\``)).map(([code, file]) => `${code} (${file})`);
    expect(missing).toEqual([]);
  });
});
