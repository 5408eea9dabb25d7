import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, runCli, startCli } from './helpers/cli.ts';
import { emptyDatabase, type TestDatabase } from './helpers/db.ts';
import { eventually } from './helpers/wait.ts';
import { SCHEDULED_JOBS } from '../src/worker/jobs.ts';

let db: TestDatabase;
beforeAll(async () => {
  db = await emptyDatabase();
});
afterAll(async () => {
  await db?.drop();
});

describe('tally CLI', () => {
  it.each([
    [['migrate', '--bogus']],
    [['status', '--json=maybe']],
    [['start', '--shutdown-timeout', 'soon']],
    [['worker', '--shutdown-timeout', '0']],
    [['nonsense']],
  ])('a bad option (%j) is one line on stderr and exit code 2', async (args) => {
    const result = await runCli(args, cleanEnv({ DATABASE_URL: db.url }));
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/^error: /);
  });

  it('a malformed DATABASE_URL is a usage error too', async () => {
    const result = await runCli(['status'], cleanEnv({ DATABASE_URL: 'mysql://nope' }));
    expect(result.code).toBe(2);
    expect(result.stderr.trim()).toBe('error: DATABASE_URL: must be a postgres:// or postgresql:// URL');
  });

  it('every command answers --help with exit code 0', async () => {
    for (const command of ['migrate', 'sql', 'start', 'worker', 'status', 'import', 'verify', 'rollup', 'schedule']) {
      const result = await runCli([command, '--help'], cleanEnv());
      expect(result.code, command).toBe(0);
      expect(result.stdout).toContain(`Usage: tally ${command}`);
    }
    const top = await runCli(['--help'], cleanEnv());
    expect(top.stdout).toMatch(/DATABASE_URL/);
  });

  it('an unreachable database fails with exit code 1 and a stable code', async () => {
    const result = await runCli(['migrate'], cleanEnv({ DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' }));
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^error \[database_unreachable\]: cannot connect/);
  });

  it('worker refuses an unmigrated database; migrate, status and start/stop work end to end', async () => {
    const env = cleanEnv({ DATABASE_URL: db.url });
    const refused = await runCli(['worker'], env);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/\[schema_outdated\].*tally migrate/);

    const migrated = await runCli(['migrate'], env);
    expect(migrated.code).toBe(0);
    expect(migrated.stdout).toMatch(/^applied \d+ migration\(s\)/);
    // a worker offers the interval job when it starts and then every interval: at 1h, the
    // run at start is the only one while this test reads the status
    const slow = await runCli(['schedule', 'set', 'tally-rollups', '1h'], env);
    expect(slow.code).toBe(0);
    // with no worker yet, the rollups have never run
    const before = await runCli(['status'], env);
    expect(before.stdout).toMatch(/rollups: +watermark 0 of 0; 0 events pending; never run/);

    const service = await startCli(['start'], env, /tally: ready/);
    expect(service.output()).toMatch(new RegExp(`schema version \\d+ · worker running \\(${SCHEDULED_JOBS.length} schedules\\)`));

    // the run offered at start lands within seconds (polled: a loaded machine is slow)
    let status = await runCli(['status', '--json'], env);
    for (let i = 0; i < 60 && JSON.parse(status.stdout).rollups.lastRunFinishedAt == null; i++) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      status = await runCli(['status', '--json'], env);
    }
    expect(status.code).toBe(0);
    const parsed = JSON.parse(status.stdout);
    expect(parsed.pendingMigrations).toBe(0);
    expect(parsed.workers.filter((w: { live: boolean }) => w.live)).toHaveLength(1);
    expect(parsed.jobs[0]).toMatchObject({ name: 'tally-heartbeat', scheduled: true, cron: '* * * * *' });
    expect(parsed.jobs.map((j: { name: string; scheduled: boolean }) => [j.name, j.scheduled])).toEqual(SCHEDULED_JOBS.map((j) => [j.name, true]));
    expect(parsed.ledger).toMatchObject({ defaultPartitionRows: 0, rejectedLastDay: 0 });
    expect(parsed.ledger.partitionedThrough).toMatch(/^\d{4}-\d{2}$/);
    const text = await runCli(['status'], env);
    expect(text.stdout).toMatch(/ledger: +partitions through \d{4}-\d{2}; default partition empty; 0 rejected/);
    expect(text.stdout).toMatch(/rollups: +watermark 0 of 0; 0 events pending; last run \d+s ago \(0 events\)/);
    expect(parsed.rollups).toMatchObject({ watermark: 0, pendingEvents: 0, lastRunFinishedAt: expect.any(String) });

    service.child.kill('SIGTERM');
    expect(await service.exited).toBe(0);
    expect(service.output()).toMatch(/SIGTERM: stopping worker[\s\S]*stopped/);

    const after = await runCli(['status', '--json'], env);
    expect(JSON.parse(after.stdout).workers.filter((w: { live: boolean }) => w.live)).toHaveLength(0);
  });

  it('the heartbeat job runs through the worker and is recorded', async () => {
    const { startWorker } = await import('../src/worker/worker.ts');
    const worker = await startWorker({ connectionString: db.url });
    try {
      const result = (await worker.runNow('tally-heartbeat')) as { schema_version: number };
      expect(result.schema_version).toBeGreaterThan(0);
      // the daily ledger jobs run through the same path and return their reports
      expect(await worker.runNow('tally-ensure-partitions')).toMatchObject({ created: [], default_rows: 0 });
      expect(await worker.runNow('tally-purge-idempotency-keys')).toMatchObject({ deleted: 0 });
    } finally {
      await worker.stop();
    }
    const { rows } = await db.pool.query("select runs, failures, last_ok from tally.job_runs where job = 'tally-heartbeat'");
    expect(rows[0]).toMatchObject({ failures: '0', last_ok: true });
    expect(Number(rows[0].runs)).toBeGreaterThanOrEqual(1);
  });

  it('stop() cancels a job still running past the shutdown timeout, and the run is recorded as failed', async () => {
    const { startWorker } = await import('../src/worker/worker.ts');
    const worker = await startWorker({ connectionString: db.url });
    const blocker = await db.pool.connect();
    try {
      await blocker.query('begin');
      await blocker.query('lock table tally.migrations in access exclusive mode');
      const run = worker.runNow('tally-heartbeat').then(
        () => 'finished',
        (err: { code?: string }) => err.code,
      );
      // Wait until the job is blocked on the lock.
      await eventually(async () => {
        const { rows } = await db.pool.query(
          "select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and query like '%heartbeat%'",
        );
        expect(rows[0].n, 'heartbeat jobs waiting for the lock').toBeGreaterThan(0);
      });
      await worker.stop(500);
      expect(await run).toBe('57014'); // query_canceled
    } finally {
      await blocker.query('rollback');
      blocker.release();
    }
    const { rows } = await db.pool.query("select last_ok, last_error from tally.job_runs where job = 'tally-heartbeat'");
    expect(rows[0]).toMatchObject({ last_ok: false, last_error: expect.stringMatching(/cancel/) });
  });
});
