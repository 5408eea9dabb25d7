/**
 * The CLI's failures: every exit-1 error carries a stable code, `--json` turns errors into
 * one JSON object on stderr, option messages name the option once in plain words, read-only
 * commands create no embedded cluster, a refused TALLY_DATA_DIR is not created, a busy
 * TALLY_EMBEDDED_PORT is refused, and a closed stdout ends the process quietly.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TALLY_BIN, cleanEnv, runCli } from './helpers/cli.ts';
import { emptyDatabase, migratedDatabase, type TestDatabase } from './helpers/db.ts';

let empty: TestDatabase;
let migrated: TestDatabase;
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tally-cli-errors-'));
beforeAll(async () => {
  [empty, migrated] = await Promise.all([emptyDatabase(), migratedDatabase()]);
});
afterAll(async () => {
  await Promise.all([empty?.drop(), migrated?.drop()]);
  fs.rmSync(root, { recursive: true, force: true });
});

const UNREACHABLE = 'postgres://postgres@127.0.0.1:1/none';
/** zod's default texts, which must never reach a user. */
const ZOD_TEXT = /Invalid input|expected \w+, received|Unrecognized key|Too (small|big)|Invalid (string|option)/;

/** A fresh directory to run in, with TALLY_DATA_DIR inside it (nothing there yet). */
function scratch(name: string): { cwd: string; dataDir: string } {
  const cwd = path.join(root, name);
  fs.mkdirSync(cwd, { recursive: true });
  return { cwd, dataDir: path.join(cwd, 'data', 'pg') };
}

function runIn(cwd: string, args: string[], env: NodeJS.ProcessEnv) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [TALLY_BIN, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('bad options: one line that names the option once, in plain words (exit 2)', () => {
  it.each([
    [['verify', '--from', 'yesterday'], 'error: --from: must be an ISO 8601 time with an offset, e.g. 2026-11-01T00:00:00Z'],
    [['verify', '--to', '2026-11-01'], 'error: --to: must be an ISO 8601 time with an offset, e.g. 2026-11-01T00:00:00Z'],
    [['verify', '--from', '2030-01-01T00:00:00Z', '--to', '2029-01-01T00:00:00Z'], 'error: --from: must be earlier than --to'],
    [['rollup', '--from', '2026-01-01T00:00:00Z'], 'error: --from: only with --recompute (folding takes what is pending)'],
    [['rollup', '--chunk', '10'], 'error: --chunk: must be at least 1000'],
    [['rollup', '--chunk', 'many'], 'error: --chunk: must be a whole number of events'],
    [['worker', '--shutdown-timeout', 'soon'], 'error: --shutdown-timeout: must be a whole number of seconds'],
    [['start', '--shutdown-timeout', '0'], 'error: --shutdown-timeout: must be at least 1 second'],
    [['start', '--shutdown-timeout', '99999'], 'error: --shutdown-timeout: must be at most 3600 seconds'],
    [['import', '--jobs', '0', '-'], 'error: --jobs: must be at least 1'],
    [['import', '--format', 'xml', '-'], 'error: --format: must be ndjson or csv'],
    [['status', '--bogus'], "error: unknown option '--bogus'"],
    [['verify', '--from'], "error: option '--from <time>' argument missing"],
  ])('%j', async (args, line) => {
    const result = await runCli(args, cleanEnv({ DATABASE_URL: migrated.url }));
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(`${line}\n`);
    const flag = /--[a-z-]+/.exec(line)?.[0];
    if (flag) expect(result.stderr.split(flag).length - 1, 'names the option once').toBeLessThanOrEqual(line.includes('earlier than') ? 2 : 1);
    expect(result.stderr).not.toMatch(ZOD_TEXT);
  });

  it.each([
    [{ TALLY_EMBEDDED_PORT: 'abc' }, 'error: TALLY_EMBEDDED_PORT: must be a port number from 1 to 65535'],
    [{ TALLY_EMBEDDED_PORT: '70000' }, 'error: TALLY_EMBEDDED_PORT: must be a port number from 1 to 65535'],
    [{ DATABASE_URL: '   ' }, 'error: DATABASE_URL: must not be empty'],
    [{ DATABASE_URL: 'mysql://x' }, 'error: DATABASE_URL: must be a postgres:// or postgresql:// URL'],
  ])('environment %j', async (env, line) => {
    const result = await runCli(['status'], cleanEnv(env));
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(`${line}\n`);
    expect(result.stderr).not.toMatch(ZOD_TEXT);
  });
});

describe('every exit-1 error has a [code]', () => {
  it.each([
    [['verify'], 'schema_outdated'],
    [['verify', '--json'], 'schema_outdated'],
    [['rollup'], 'schema_outdated'],
    [['rollup', '--recompute'], 'schema_outdated'],
    [['schedule', 'list'], 'schema_outdated'],
    [['worker'], 'schema_outdated'],
    [['import', '-'], 'schema_outdated'],
  ])('uninstalled database: %j → %s', async (args, code) => {
    const result = await runCli(args, cleanEnv({ DATABASE_URL: empty.url }), '');
    expect(result.code).toBe(1);
    if (args.includes('--json')) expect(JSON.parse(result.stderr)).toMatchObject({ error: { code } });
    else expect(result.stderr).toMatch(new RegExp(`^error \\[${code}\\]: .*tally migrate`));
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('status on an uninstalled database exits 0 and counts every migration as pending (not postgres-migrations\' own)', async () => {
    const result = await runCli(['status', '--json'], cleanEnv({ DATABASE_URL: empty.url }));
    expect(result.code).toBe(0);
    const status = JSON.parse(result.stdout);
    expect(status.schemaVersion).toBeUndefined();
    expect(status.pendingMigrations).toBe(status.latestVersion);
  });

  it.each([['status'], ['verify'], ['rollup'], ['schedule'], ['migrate'], ['worker'], ['start'], ['import', '-']])(
    'unreachable database: %j → database_unreachable',
    async (...args) => {
      const result = await runCli(args, cleanEnv({ DATABASE_URL: UNREACHABLE }), '');
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/^error \[database_unreachable\]: cannot connect to the database/);
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
    },
  );

  it('verify over more than 400 days: invalid_parameter', async () => {
    const result = await runCli(['verify', '--from', '2020-01-01T00:00:00Z'], cleanEnv({ DATABASE_URL: migrated.url }));
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('error [invalid_parameter]: from, to: at most 400 days per call; verify a long history in pieces\n');
  });

  it('rollup --recompute past the retention of raw events: past_retention', async () => {
    const result = await runCli(['rollup', '--recompute', '--from', '2020-01-01T00:00:00Z', '--to', '2020-02-01T00:00:00Z'], cleanEnv({ DATABASE_URL: migrated.url }));
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^error \[past_retention\]: from: /);
  });

  it('sql -o into a folder that does not exist is bad usage; an unwritable target is output_failed', async () => {
    const missing = await runCli(['sql', '-o', path.join(root, 'no', 'such', 'tally.sql')], cleanEnv());
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe(`error: --output: no such folder ${path.join(root, 'no', 'such')}\n`);
    const unwritable = await runCli(['sql', '-o', '/proc/tally.sql'], cleanEnv());
    expect(unwritable.code).toBe(1);
    expect(unwritable.stderr).toMatch(/^error \[output_failed\]: cannot write \/proc\/tally\.sql: /);
    const written = await runCli(['sql', '-o', path.join(root, 'tally.sql')], cleanEnv());
    expect(written.code).toBe(0);
    expect(fs.readFileSync(path.join(root, 'tally.sql'), 'utf8')).toMatch(/^-- Tally install script/);
  });
});

describe('--json errors are one JSON object on stderr; stdout stays empty', () => {
  it.each([
    [['status', '--json', '--bogus'], 2, 'invalid_usage', "unknown option '--bogus'"],
    [['verify', '--json', '--from', 'x'], 2, 'invalid_usage', '--from: must be an ISO 8601 time with an offset, e.g. 2026-11-01T00:00:00Z'],
    [['rollup', '--json', '--chunk', '1'], 2, 'invalid_usage', '--chunk: must be at least 1000'],
    [['verify', '--json', '--from', '2020-01-01T00:00:00Z'], 1, 'invalid_parameter', 'from, to: at most 400 days per call; verify a long history in pieces'],
  ])('%j', async (args, exit, code, message) => {
    const result = await runCli(args, cleanEnv({ DATABASE_URL: migrated.url }));
    expect(result.code).toBe(exit);
    expect(result.stdout).toBe('');
    expect(result.stderr.endsWith('\n')).toBe(true);
    expect(JSON.parse(result.stderr)).toEqual({ error: { code, message } });
  });

  it('an unreachable database with --json', async () => {
    const result = await runCli(['status', '--json'], cleanEnv({ DATABASE_URL: UNREACHABLE }));
    expect(result.code).toBe(1);
    expect(JSON.parse(result.stderr)).toMatchObject({ error: { code: 'database_unreachable', message: expect.stringMatching(/^cannot connect/) } });
  });
});

describe('verify --json', () => {
  it('prints money as decimal strings', async () => {
    // one stored hourly bucket whose cost differs from its (absent) events
    const { rows } = await migrated.pool.query("select id from tally.create_account(p_name => 'Money', p_owner_id => null::uuid, p_timezone => 'UTC')");
    const account = rows[0].id as string;
    const hour = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3_600_000);
    await migrated.pool.query(
      `insert into tally.usage_hourly (account_id, bucket, dim_key, event_type, requests, successful, failed, cached, files, bytes,
         tokens_in, tokens_out, cost_usd, potential_cost_usd, quantity, latency_count, latency_sum, latency_hist)
       values ($1, $2, gen_random_uuid(), 'api_call', 1, 1, 0, 0, 0, 0, 0, 0, 0.1000000000000000055, 0.25, 0, 0, 0, array_fill(0::bigint, array[42]))`,
      [account, hour],
    );
    try {
      const result = await runCli(['verify', '--json'], cleanEnv({ DATABASE_URL: migrated.url }));
      expect(result.code).toBe(1);
      const report = JSON.parse(result.stdout);
      const hourly = report.mismatches.find((m: { grain: string }) => m.grain === 'hourly');
      expect(hourly.metrics.cost_usd).toEqual({ expected: null, actual: '0.1000000000000000055' });
      expect(hourly.metrics.potential_cost_usd.actual).toBe('0.25');
      expect(hourly.metrics.requests.actual).toBe(1);
      expect(JSON.parse(result.stderr)).toMatchObject({ error: { code: 'rollups_mismatch' } });
    } finally {
      await migrated.pool.query('delete from tally.usage_hourly where account_id = $1', [account]);
    }
  });
});

describe('the embedded database is created only by start and migrate', () => {
  it('status without DATABASE_URL says nothing is set up, and creates nothing', async () => {
    const { cwd, dataDir } = scratch('status');
    const env = cleanEnv({ TALLY_DATA_DIR: dataDir });
    const text = await runIn(cwd, ['status'], env);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^database: +embedded PostgreSQL, not created yet \(no cluster in .*\)\nschema: +not installed \(`tally start` creates/);
    const json = await runIn(cwd, ['status', '--json'], env);
    expect(JSON.parse(json.stdout)).toMatchObject({ embeddedCreated: false, dataDir, schemaVersion: null, workers: [] });
    // and the default location, in the working directory
    const byDefault = await runIn(cwd, ['status'], cleanEnv());
    expect(byDefault.code).toBe(0);
    expect(fs.readdirSync(cwd)).toEqual([]);
  });

  it.each([['verify'], ['rollup'], ['schedule', 'list'], ['worker'], ['import', '-']])('%j without a cluster: embedded_not_created, nothing created', async (...args) => {
    const { cwd, dataDir } = scratch(`ro-${args[0]}`);
    const result = await runIn(cwd, args, cleanEnv({ TALLY_DATA_DIR: dataDir }));
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^error \[embedded_not_created\]: there is no embedded database in .* yet: `tally start`/);
    expect(fs.readdirSync(cwd)).toEqual([]);
  });

  it('a refused TALLY_DATA_DIR is not created: a file in the way', async () => {
    const { cwd } = scratch('file-in-the-way');
    fs.writeFileSync(path.join(cwd, 'file'), 'x');
    const result = await runIn(cwd, ['migrate'], cleanEnv({ TALLY_DATA_DIR: path.join(cwd, 'file', 'sub', 'pg') }));
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^error \[embedded_unavailable\]: TALLY_DATA_DIR .*: .*file is not a directory/);
    expect(fs.readdirSync(cwd)).toEqual(['file']);
  });

  it.runIf(process.getuid?.() === 0)('a refused TALLY_DATA_DIR is not created: as root, under a folder the postgres user cannot reach', async () => {
    const { cwd } = scratch('private');
    const privateDir = path.join(cwd, 'private');
    fs.mkdirSync(privateDir, { mode: 0o700 });
    const result = await runIn(cwd, ['migrate'], cleanEnv({ TALLY_DATA_DIR: path.join(privateDir, 'tally', 'pg') }));
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^error \[embedded_unavailable\]: running as root, so PostgreSQL runs as the OS user "postgres", which cannot reach/);
    expect(fs.readdirSync(privateDir)).toEqual([]);
  });

  it('a busy TALLY_EMBEDDED_PORT is refused (embedded_port_busy) before anything is created', async () => {
    const { cwd, dataDir } = scratch('busy-port');
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen({ port: 0, host: '127.0.0.1' }, resolve));
    const port = (holder.address() as net.AddressInfo).port;
    try {
      const result = await runIn(cwd, ['migrate'], cleanEnv({ TALLY_DATA_DIR: dataDir, TALLY_EMBEDDED_PORT: String(port) }));
      expect(result.code).toBe(1);
      expect(result.stderr).toBe(`error [embedded_port_busy]: TALLY_EMBEDDED_PORT ${port} is taken by another process on 127.0.0.1; choose a free port, or unset it to let Tally pick one\n`);
      expect(fs.readdirSync(cwd)).toEqual([]);
    } finally {
      holder.close();
    }
  });
});

describe('a closed stdout', () => {
  it('`tally --help | head -1` ends quietly, without an EPIPE', async () => {
    const result = await new Promise<{ code: number | null; stderr: string; first: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [TALLY_BIN, '--help'], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      let first = '';
      child.stdout.once('data', (c: Buffer) => {
        first = c.toString().split('\n')[0]!;
        child.stdout.destroy(); // what `head -1` does after its line
      });
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stderr, first }));
    });
    expect(result.first).toBe('Usage: tally [options] [command]');
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });
});
