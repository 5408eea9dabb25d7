/**
 * The package as an app gets it: `npm pack` (which builds dist/ through the prepare
 * script), the tarball installed into a scratch app, `import { createTally } from 'tally'`
 * type-checked with the app's own strict tsconfig and run against a real database, and
 * the installed `tally --version` printing Tally's version, not the app's.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): string {
  try {
    return execFileSync(cmd, args, { cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 300_000 });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${path.basename(cmd)} ${args.join(' ')} failed:\n${e.stdout ?? ''}${e.stderr ?? ''}`, { cause: err });
  }
}

const APP_SOURCE = `
import { createTally, TALLY_VERSION, InvalidInputError, type IngestResult, type Tally } from 'tally';

const url: string | undefined = process.env.APP_DATABASE_URL;
if (!url) throw new Error('APP_DATABASE_URL is not set');
const tally: Tally = createTally({ connectionString: url });
try {
  const account = await tally.createAccount({ name: 'Scratch app', timezone: 'Asia/Tokyo' });
  const result: IngestResult = await tally.recordEvents([
    { accountId: account.id, eventType: 'api_call', idempotencyKey: 'scratch-1' },
    { accountId: account.id, eventType: 'api_call', idempotencyKey: 'scratch-1' },
  ]);
  // @ts-expect-error accountId is a string: this line fails the type check if the package's types resolved to any
  await tally.recordEvents([{ accountId: 42, eventType: 'api_call' }]).catch(() => undefined);
  let refused = '';
  try {
    await tally.recordEvents([{ accountId: 'not-a-uuid', eventType: 'api_call' }]);
  } catch (err) {
    if (err instanceof InvalidInputError) refused = err.code;
  }
  console.log(JSON.stringify({ version: TALLY_VERSION, timezone: account.timezone, accepted: result.accepted, duplicates: result.duplicates, refused }));
} finally {
  await tally.close();
}
`;

let db: TestDatabase;
let scratch: string;
beforeAll(async () => {
  db = await migratedDatabase();
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'tally-scratch-app-'));
});
afterAll(async () => {
  await db?.drop();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

describe('the packed package', () => {
  it('installs from its tarball, imports with types under a strict tsconfig, and runs', { timeout: 600_000 }, async () => {
    const packed = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', scratch], ROOT)) as { filename: string; files: { path: string }[] }[];
    const files = packed[0]!.files.map((f) => f.path);
    expect(files).toContain('dist/index.js');
    expect(files).toContain('dist/index.d.ts');
    expect(files).toContain('db/migrations/00001_auth-compat.sql');
    expect(files.some((f) => f.startsWith('test/') || f.startsWith('src/'))).toBe(false);

    fs.writeFileSync(
      path.join(scratch, 'package.json'),
      JSON.stringify({ name: 'scratch-app', version: '9.9.9', private: true, type: 'module' }, null, 2),
    );
    run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', path.join(scratch, packed[0]!.filename), `@types/node@${readVersion('@types/node')}`], scratch);

    fs.writeFileSync(path.join(scratch, 'app.ts'), APP_SOURCE);
    fs.writeFileSync(
      path.join(scratch, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { target: 'ES2023', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: true, types: ['node'] },
        files: ['app.ts'],
      }),
    );
    // skipLibCheck as apps set it (pg-boss 12's own declarations do not check without it); the
    // expect-error line in app.ts proves the package's types are real, not any.
    run(process.execPath, [TSC, '-p', scratch], scratch);

    const out = run(process.execPath, [path.join(scratch, 'app.ts')], scratch, { ...process.env, APP_DATABASE_URL: db.url });
    expect(JSON.parse(out.trim().split('\n').at(-1)!)).toEqual({
      version: readVersion('.'),
      timezone: 'Asia/Tokyo',
      accepted: 1,
      duplicates: 1,
      refused: 'invalid_input',
    });

    const bin = path.join(scratch, 'node_modules', '.bin', 'tally');
    expect(run(process.execPath, [bin, '--version'], scratch).trim()).toBe(readVersion('.'));
  });
});

function readVersion(pkg: string): string {
  const file = pkg === '.' ? path.join(ROOT, 'package.json') : path.join(ROOT, 'node_modules', pkg, 'package.json');
  return (JSON.parse(fs.readFileSync(file, 'utf8')) as { version: string }).version;
}
