/**
 * The embedded default: no DATABASE_URL, data in a directory, persistent across restarts.
 * Runs its own embedded PostgreSQL 17 whatever server the rest of the suite uses.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { startEmbedded } from '../src/database/embedded.ts';
import { cleanEnv, runCli, startCli } from './helpers/cli.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tally-embedded-'));
fs.chmodSync(root, 0o755);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

async function query<T extends pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

describe('embedded PostgreSQL', () => {
  it('start, write, stop, start again: the row is still there', async () => {
    const dataDir = path.join(root, 'direct');
    const first = await startEmbedded({ dataDir });
    expect(first.started).toBe(true);
    const [version] = await query<{ server_version_num: string }>(first.connectionString, 'show server_version_num');
    expect(Number(version?.server_version_num)).toBeGreaterThanOrEqual(170000);
    await query(first.connectionString, 'create table kept (note text)');
    await query(first.connectionString, 'insert into kept values ($1)', ['survives a restart']);

    // A second start on a running data directory reuses the server instead of failing.
    const again = await startEmbedded({ dataDir });
    expect(again.started).toBe(false);
    expect(again.port).toBe(first.port);
    await again.stop(); // not ours to stop: a no-op

    await first.stop();
    expect(fs.existsSync(path.join(dataDir, 'postmaster.pid'))).toBe(false);

    const second = await startEmbedded({ dataDir });
    try {
      expect(await query(second.connectionString, 'select note from kept')).toEqual([{ note: 'survives a restart' }]);
    } finally {
      await second.stop();
    }
  });

  it('adopts a server whose starter is gone, and then stops it', async () => {
    const dataDir = path.join(root, 'orphan');
    const first = await startEmbedded({ dataDir });
    // Make the starter look dead, as after a SIGKILL: a pid that has exited.
    const { spawnSync } = await import('node:child_process');
    const deadPid = spawnSync('true').pid!;
    const stateFile = path.join(dataDir, 'tally-embedded.json');
    fs.writeFileSync(stateFile, JSON.stringify({ ...JSON.parse(fs.readFileSync(stateFile, 'utf8')), ownerPid: deadPid }));

    const adopter = await startEmbedded({ dataDir });
    expect(adopter.started).toBe(true);
    expect(adopter.port).toBe(first.port);
    await adopter.stop();
    expect(fs.existsSync(path.join(dataDir, 'postmaster.pid'))).toBe(false);
  });

  it('refuses a data directory holding a cluster Tally did not create', async () => {
    const dataDir = path.join(root, 'foreign');
    fs.mkdirSync(dataDir, { recursive: true });
    fs.writeFileSync(path.join(dataDir, 'PG_VERSION'), '17\n');
    await expect(startEmbedded({ dataDir })).rejects.toMatchObject({ code: 'embedded_failed' });
  });

  it('`tally start` with no database variables boots, stops cleanly on SIGINT, and comes back on the same data', async () => {
    const env = cleanEnv({ TALLY_DATA_DIR: path.join(root, 'cli') });
    const first = await startCli(['start'], env, /tally: ready/);
    expect(first.output()).toMatch(/database embedded PostgreSQL at 127\.0\.0\.1:\d+ .*schema version \d+ · worker running/);
    const status = await runCli(['status', '--json'], env);
    expect(status.code).toBe(0);
    const version = JSON.parse(status.stdout).schemaVersion;
    expect(version).toBeGreaterThan(0);

    first.child.kill('SIGINT');
    expect(await first.exited).toBe(0);
    expect(fs.existsSync(path.join(root, 'cli', 'postmaster.pid'))).toBe(false);

    const second = await startCli(['start'], env, /tally: ready/);
    expect(second.output()).not.toMatch(/applied \d+ migration/);
    expect(second.output()).toContain(`schema version ${version}`);
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  });
});
