/** `tally run JOB`: runs a scheduled job now, records the run, prints its result; unknown jobs are usage errors. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SCHEDULED_JOBS } from '../src/worker/jobs.ts';
import { cleanEnv, runCli } from './helpers/cli.ts';
import { emptyDatabase, migratedDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let env: NodeJS.ProcessEnv;
beforeAll(async () => {
  db = await migratedDatabase();
  env = cleanEnv({ DATABASE_URL: db.url });
});
afterAll(async () => {
  await db?.drop();
});

describe('tally run', () => {
  it('runs the heartbeat now and records it in tally.job_runs like a scheduled run', async () => {
    const result = await runCli(['run', 'tally-heartbeat'], env);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^tally-heartbeat: ok in \d+ ms\n\{\n {2}"at": /);
    const { rows } = await db.pool.query("select runs::int, last_ok, last_result from tally.job_runs where job = 'tally-heartbeat'");
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ runs: 1, last_ok: true });
    expect(rows[0].last_result).toHaveProperty('schema_version');
  });

  it('--json: tally-rollups folds what is pending and reports it', async () => {
    const account = (await runCli(['accounts', 'create', 'Run Co'], env)).stdout.trim();
    await runCli(['events', 'record', JSON.stringify([1, 2, 3].map((i) => ({ account_id: account, event_type: 'api_call', idempotency_key: `r${i}` })))], env);
    const result = await runCli(['run', 'tally-rollups', '--json'], env);
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report).toEqual({ job: 'tally-rollups', ok: true, elapsedMs: expect.any(Number), result: expect.objectContaining({ more: false, events: 3 }) });
    const { rows } = await db.pool.query('select sum(requests)::int as n from tally.usage_hourly where account_id = $1', [account]);
    expect(rows[0].n).toBe(3);
  });

  it('a job that fails exits 1 with its code, and the failure is recorded', async () => {
    // a rollup that disagrees with the raw events: verify-rollups must fail
    const account = (await runCli(['accounts', 'create', 'Broken Co'], env)).stdout.trim();
    const yesterday = new Date(Date.now() - 86_400_000).toISOString();
    await runCli(['events', 'record', JSON.stringify({ account_id: account, event_type: 'api_call', occurred_at: yesterday })], env);
    await runCli(['run', 'tally-rollups'], env);
    await db.pool.query('update tally.usage_daily set requests = requests + 1 where account_id = $1', [account]);
    const result = await runCli(['run', 'tally-verify-rollups'], env);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr.trim()).toMatch(/^error \[rollups_mismatch\]: tally-verify-rollups failed: /);
    const { rows } = await db.pool.query("select failures::int, last_ok, last_error from tally.job_runs where job = 'tally-verify-rollups'");
    expect(rows).toEqual([{ failures: 1, last_ok: false, last_error: expect.stringContaining('differ from the raw events') }]);
  });

  it('an unknown job is bad usage (exit 2) listing the jobs; so is a missing one', async () => {
    const result = await runCli(['run', 'tally-nope'], env);
    expect(result.code).toBe(2);
    expect(result.stderr.trim()).toBe(`error: unknown job "tally-nope"; the jobs are: ${SCHEDULED_JOBS.map((j) => j.name).join(', ')}`);
    expect((await runCli(['run'], env)).code).toBe(2);
  });

  it('on an uninstalled database: exit 1, schema_outdated', async () => {
    const empty = await emptyDatabase();
    try {
      const result = await runCli(['run', 'tally-heartbeat'], cleanEnv({ DATABASE_URL: empty.url }));
      expect(result.code).toBe(1);
      expect(result.stderr.trim()).toBe('error [schema_outdated]: Tally is not installed in this database: run `tally migrate` first');
    } finally {
      await empty.drop();
    }
  });
});

describe('help of the newcomer commands', () => {
  it.each([
    'url', 'psql', 'accounts', 'accounts create', 'accounts list', 'keys', 'keys create', 'keys list', 'keys revoke', 'events', 'events record', 'demo', 'run',
  ])('tally %s --help: exit 0, usage on stdout', async (name) => {
    const command = name.split(' ');
    const result = await runCli([...command, '--help'], cleanEnv());
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`Usage: tally ${command.join(' ')}`);
  });
});
