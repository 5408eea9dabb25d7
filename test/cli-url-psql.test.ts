/**
 * `tally url` and `tally psql`: on DATABASE_URL, and on the embedded PostgreSQL running or
 * not (url never starts it; psql starts it for its session and stops it after).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbedded } from '../src/database/embedded.ts';
import { cleanEnv, runCli } from './helpers/cli.ts';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tally-cli-url-'));
fs.chmodSync(root, 0o755);
beforeAll(async () => {
  db = await migratedDatabase();
});
afterAll(async () => {
  await db?.drop();
  fs.rmSync(root, { recursive: true, force: true });
});

describe('tally url', () => {
  it('prints DATABASE_URL as it is, --redacted masks the password, --json describes it', async () => {
    const withPassword = new URL(db.url);
    withPassword.password = 's3cret';
    const env = cleanEnv({ DATABASE_URL: withPassword.toString() });
    const plain = await runCli(['url'], env);
    expect(plain.code).toBe(0);
    expect(plain.stdout).toBe(`${withPassword.toString()}\n`);
    const redacted = await runCli(['url', '--redacted'], env);
    expect(redacted.stdout).not.toContain('s3cret');
    expect(redacted.stdout).toContain(':***@');
    const json = JSON.parse((await runCli(['url', '--json'], env)).stdout);
    expect(json).toEqual({
      url: withPassword.toString(),
      kind: 'external',
      host: withPassword.hostname,
      port: Number(withPassword.port || 5432),
      database: db.name,
      user: decodeURIComponent(withPassword.username),
    });
  });

  it('with no embedded database yet it creates nothing and says to run npm start (exit 1, embedded_not_running)', async () => {
    const dataDir = path.join(root, 'never');
    const result = await runCli(['url'], cleanEnv({ TALLY_DATA_DIR: dataDir }));
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr.trim()).toMatch(/^error \[embedded_not_running\]: there is no embedded database in .* yet: run `npm start`/);
    expect(fs.existsSync(dataDir)).toBe(false);
  });

  it('prints the running embedded server\'s URL (superuser postgres), and refuses once it is stopped; psql starts it for its session', async () => {
    const dataDir = path.join(root, 'embedded');
    const env = cleanEnv({ TALLY_DATA_DIR: dataDir });
    const server = await startEmbedded({ dataDir });
    try {
      const result = await runCli(['url'], env);
      expect(result.code).toBe(0);
      expect(result.stdout).toBe(`${server.connectionString}\n`);
      const url = new URL(result.stdout.trim());
      expect(url.username).toBe('postgres');
      expect(url.hostname).toBe('127.0.0.1');
      const client = new pg.Client({ connectionString: result.stdout.trim() });
      await client.connect();
      await client.end();
      const json = JSON.parse((await runCli(['url', '--json'], env)).stdout);
      expect(json).toMatchObject({ kind: 'embedded', running: true, user: 'postgres', database: 'postgres', port: server.port, dataDir });

      // psql on a server someone else runs leaves it running
      const shared = await runCli(['psql', '-Atc', 'select 40 + 2'], env);
      expect(shared.code).toBe(0);
      expect(shared.stdout).toBe('42\n');
      expect(fs.existsSync(path.join(dataDir, 'postmaster.pid'))).toBe(true);
    } finally {
      await server.stop();
    }

    const stopped = await runCli(['url'], env);
    expect(stopped.code).toBe(1);
    expect(stopped.stderr.trim()).toMatch(/^error \[embedded_not_running\]: the embedded PostgreSQL in .* is not running: start it with `npm start`/);
    expect(fs.existsSync(path.join(dataDir, 'postmaster.pid'))).toBe(false);

    const started = await runCli(['psql', '-Atc', 'select current_user'], env);
    expect(started.code).toBe(0);
    expect(started.stdout).toBe('postgres\n');
    expect(fs.existsSync(path.join(dataDir, 'postmaster.pid'))).toBe(false);
  });
});

describe('tally psql', () => {
  it('runs the real psql on DATABASE_URL, passing the arguments through', async () => {
    const env = cleanEnv({ DATABASE_URL: db.url });
    const result = await runCli(['psql', '-c', 'select 1'], env);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/\?column\?\s*\n-+\s*\n\s*1\s*\n\(1 row\)/);
    const tally = await runCli(['psql', '-At', '-v', 'ON_ERROR_STOP=1', '-c', "select count(*) from tally.settings where name = 'ingest.max_batch'"], env);
    expect(tally.stdout).toBe('1\n');
  });

  it('a failing psql is exit 1 with psql_failed, after psql\'s own message', async () => {
    const result = await runCli(['psql', '-c', 'select no_such_column'], cleanEnv({ DATABASE_URL: db.url }));
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/column "no_such_column" does not exist/);
    expect(result.stderr.trim().split('\n').at(-1)).toBe('error [psql_failed]: psql exited with code 1');
  });

  it('without psql on PATH: exit 1, psql_not_found, and how to install it', async () => {
    const empty = fs.mkdtempSync(path.join(root, 'bin-'));
    const result = await runCli(['psql', '-c', 'select 1'], cleanEnv({ DATABASE_URL: db.url, PATH: empty }));
    expect(result.code).toBe(1);
    expect(result.stderr.trim()).toMatch(/^error \[psql_not_found\]: psql is not installed or not on PATH: install the PostgreSQL client/);
  });

  it('--help is tally\'s; -- passes an option tally would read on to psql', async () => {
    const help = await runCli(['psql', '--help'], cleanEnv());
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: tally psql');
    const passed = await runCli(['psql', '--', '--version'], cleanEnv({ DATABASE_URL: db.url }));
    expect(passed.code).toBe(0);
    expect(passed.stdout).toMatch(/^psql \(PostgreSQL\) \d+/);
  });
});
