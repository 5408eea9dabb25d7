/**
 * `tally schedule list|set|disable|enable|reset`: overrides persisted in tally.job_schedules
 * (the interval job's in the setting rollups.interval), applied by a worker at start, and
 * written straight into pg-boss's schedule table so a running worker follows at once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { SCHEDULED_JOBS } from '../src/worker/jobs.ts';
import { startWorker, type Worker } from '../src/worker/worker.ts';
import { cleanEnv, runCli } from './helpers/cli.ts';
import { runMigrations } from '../src/database/migrate.ts';
import { emptyDatabase, migratedDatabase, type TestDatabase } from './helpers/db.ts';
import { migrateBefore } from './helpers/partial-migrate.ts';
import { as, createUser, service, user } from './helpers/personas.ts';
import { eventually } from './helpers/wait.ts';

let db: TestDatabase;
let env: NodeJS.ProcessEnv;
beforeAll(async () => {
  db = await migratedDatabase();
  env = cleanEnv({ DATABASE_URL: db.url });
});
afterAll(async () => {
  await db?.drop();
});

const tally = (...args: string[]) => runCli(['schedule', ...args], env);

const CRON_JOBS = SCHEDULED_JOBS.filter((j) => j.cron);
const iso = z.iso.datetime();
const listEntry = z.strictObject({
  name: z.string(),
  kind: z.enum(['cron', 'interval']),
  schedule: z.string(),
  default: z.string(),
  source: z.enum(['default', 'override', 'disabled']),
  enabled: z.boolean(),
  nextRunAt: iso.nullable(),
  lastRun: z.strictObject({ finishedAt: iso, ok: z.boolean(), error: z.string().nullable(), runs: z.number(), failures: z.number() }).nullable(),
  description: z.string(),
  updatedAt: iso.nullable(),
  updatedBy: z.string().nullable(),
  problem: z.string().nullable(),
  pending: z.string().nullable(),
});
const listJson = z.strictObject({
  jobs: z.array(listEntry),
  unknownOverrides: z.array(z.strictObject({ job: z.string(), cron: z.string().nullable(), enabled: z.boolean() })),
  pgBoss: z.enum(['installed', 'not installed', 'error']),
  pgBossError: z.string().nullable(),
});
const state = z.strictObject({ kind: z.enum(['cron', 'interval']), schedule: z.string(), source: z.enum(['default', 'override', 'disabled']), enabled: z.boolean() });
const changeJson = z.strictObject({
  job: z.string(),
  action: z.enum(['set', 'disable', 'enable', 'reset']),
  before: state,
  after: state,
  changed: z.boolean(),
  nextRunAt: iso.nullable(),
  reaches: z.enum(['pg-boss', 'next-tick', 'worker-start']),
});

async function list(): Promise<z.infer<typeof listJson>> {
  const result = await tally('list', '--json');
  expect(result.code, result.stderr).toBe(0);
  return listJson.parse(JSON.parse(result.stdout));
}

async function change(...args: string[]): Promise<z.infer<typeof changeJson>> {
  const result = await tally(...args, '--json');
  expect(result.code, result.stderr).toBe(0);
  return changeJson.parse(JSON.parse(result.stdout));
}

const overrides = async () =>
  (await db.pool.query('select job, cron, enabled, updated_by from tally.job_schedules order by job')).rows as { job: string; cron: string | null; enabled: boolean; updated_by: string }[];
const rollupsInterval = async () => (await db.pool.query("select value from tally.settings where name = 'rollups.interval'")).rows[0]?.value as string;
/** pg-boss's cron schedules (what running workers' cron passes read), by job. */
async function bossSchedules(): Promise<Record<string, string>> {
  const { rows } = await db.pool.query<{ name: string; cron: string; timezone: string }>("select name, cron, timezone from pgboss.schedule where key = ''");
  for (const r of rows) expect(r.timezone).toBe('UTC');
  return Object.fromEntries(rows.map((r) => [r.name, r.cron]));
}
const defaults = () => Object.fromEntries(CRON_JOBS.map((j) => [j.name, j.cron ?? '']));

async function withWorker<T>(fn: (worker: Worker, log: string[]) => Promise<T>): Promise<T> {
  const log: string[] = [];
  const worker = await startWorker({ connectionString: db.url, log: (line) => log.push(line) });
  try {
    return await fn(worker, log);
  } finally {
    await worker.stop();
  }
}

/** Waits for a worker log line (the deadline only bounds a hang; nothing here is a timing assertion). */
function waitForLine(log: string[], pattern: RegExp): Promise<number> {
  return eventually(() => {
    const index = log.findIndex((l) => pattern.test(l));
    if (index < 0) throw new Error(`no log line ${pattern}:\n${log.join('\n')}`);
    return index;
  });
}

describe('tally schedule', () => {
  it('lists every job on its default, before any worker ran (text and --json)', async () => {
    const listed = await list();
    expect(listed.pgBoss).toBe('not installed');
    expect(listed.unknownOverrides).toEqual([]);
    expect(listed.jobs.map((j) => j.name)).toEqual(SCHEDULED_JOBS.map((j) => j.name));
    for (const job of listed.jobs) {
      const defined = SCHEDULED_JOBS.find((j) => j.name === job.name);
      expect(job).toMatchObject({ source: 'default', enabled: true, lastRun: null, problem: null, pending: null, description: defined?.description });
      expect(job.schedule).toBe(job.default);
      if (defined?.cron) {
        expect(job).toMatchObject({ kind: 'cron', schedule: defined.cron });
        expect(Date.parse(job.nextRunAt ?? '')).toBeGreaterThan(Date.now() - 60_000);
      } else {
        expect(job).toMatchObject({ kind: 'interval', schedule: '5 seconds', nextRunAt: null });
      }
    }
    // 17 3 * * * fires at 03:17 UTC
    const partitions = listed.jobs.find((j) => j.name === 'tally-ensure-partitions');
    expect(partitions?.nextRunAt).toMatch(/T03:17:00\.000Z$/);

    const text = await tally();
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^JOB +SCHEDULE \(UTC\) +SOURCE +DEFAULT +NEXT RUN +LAST RUN$/m);
    expect(text.stdout).toMatch(/^tally-heartbeat +\* \* \* \* \* +default +\* \* \* \* \* +\d{4}-\d\d-\d\d \d\d:\d\dZ +never run$/m);
    expect(text.stdout).toMatch(/^tally-rollups +every 5 seconds +default +every 5 seconds +- +never run$/m);
    expect(text.stdout).toContain('the worker applies these at its first start');
  });

  it.each([
    [['set', 'tally-nope', '* * * * *'], /^error: unknown job "tally-nope"; the jobs are: tally-heartbeat, .*tally-rollups$/],
    [['disable', 'heartbeat'], /^error: unknown job "heartbeat"/],
    [['set', 'tally-heartbeat', '61 * * * *'], /^error: tally-heartbeat: invalid cron "61 \* \* \* \*": minute field "61": must be 0 to 59 \(got 61\)$/],
    [['set', 'tally-heartbeat', '0 25 * * *'], /^error: tally-heartbeat: invalid cron .*: hour field "25"/],
    [['set', 'tally-retention', '* * * *'], /^error: tally-retention: invalid cron .*must be five fields .*got 4$/],
    [['set', 'tally-retention', '0 0 * * * *'], /must be five fields .*got 6$/],
    [['set', 'tally-retention', '@daily'], /must be five fields .*got 1$/],
    [['set', 'tally-heartbeat', '5s'], /^error: tally-heartbeat: invalid cron "5s": must be five fields/],
    [['set', 'tally-rollups', 'soon'], /^error: tally-rollups: .*rollups.interval must be an interval between 1 second and 1 hour \(got 'soon'\)$/],
    [['set', 'tally-rollups', '2 hours'], /^error: tally-rollups: .*between 1 second and 1 hour/],
    [['set', 'tally-rollups', '1.5 seconds'], /^error: tally-rollups: the interval must be a whole number of seconds \(got "1.5 seconds"\)$/],
    [['set', 'tally-rollups', '*/5 * * * *'], /^error: tally-rollups runs every rollups.interval, not on a cron: give an interval such as 5s/],
    [['set', 'tally-heartbeat', '*/5', '*', '*', '*', '*'], /^error: expected JOB and one SCHEDULE, got 6 arguments: quote the cron/],
    [['frobnicate'], /^error: unknown schedule command "frobnicate"/],
    [['set', 'tally-heartbeat', `${[...Array(60).keys()].join(',')} ${[...Array(24).keys()].join(',')} * * *`], /^error: tally-heartbeat: invalid cron .*: must be at most 200 characters$/],
  ])('refuses %j with exit code 2, one line naming the problem, and writes nothing', async (args, message) => {
    const result = await tally(...args);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr.trim()).toMatch(message);
    expect(await overrides()).toEqual([]);
    expect(await rollupsInterval()).toBe('5 seconds');
  });

  it('set and disable before any worker ran are stored, and the first worker applies them', async () => {
    const set = await change('set', 'tally-heartbeat', ' */5  *  * * * ');
    expect(set).toMatchObject({
      job: 'tally-heartbeat',
      action: 'set',
      before: { kind: 'cron', schedule: '* * * * *', source: 'default', enabled: true },
      after: { kind: 'cron', schedule: '*/5 * * * *', source: 'override', enabled: true },
      changed: true,
      reaches: 'worker-start',
    });
    expect(new Date(set.nextRunAt ?? '').getUTCMinutes() % 5).toBe(0);
    const disabled = await tally('disable', 'tally-retention');
    expect(disabled.code).toBe(0);
    expect(disabled.stdout).toMatch(/^tally-retention: 57 3 \* \* \* \(default\) → disabled \(would run 57 3 \* \* \*\)$/m);
    expect(disabled.stdout).toMatch(/the worker applies it when it starts/);
    expect(await overrides()).toEqual([
      { job: 'tally-heartbeat', cron: '*/5 * * * *', enabled: true, updated_by: 'postgres' },
      { job: 'tally-retention', cron: null, enabled: false, updated_by: 'postgres' },
    ]);

    await withWorker(async (worker, log) => {
      expect(worker.disabled).toEqual(['tally-retention']);
      const { ['tally-retention']: _, ...rest } = defaults();
      expect(await bossSchedules()).toEqual({ ...rest, 'tally-heartbeat': '*/5 * * * *' });
      expect(log).toContain('job tally-heartbeat: */5 * * * * (override; default * * * * *)');
      // a disabled job's queue is still worked: it can be run by hand
      expect(await worker.runNow('tally-retention')).toBeTypeOf('object');
    });
    const { rows } = await db.pool.query("select runs from tally.job_runs where job = 'tally-retention'");
    expect(rows[0]?.runs).toBe('1');
  });

  it('with pg-boss installed, set / disable / enable / reset rewrite its schedule at once, and a new worker agrees', async () => {
    const set = await change('set', 'tally-heartbeat', '*/2 * * * *');
    expect(set).toMatchObject({ before: { schedule: '*/5 * * * *', source: 'override' }, after: { schedule: '*/2 * * * *', source: 'override' }, reaches: 'pg-boss' });
    expect((await bossSchedules())['tally-heartbeat']).toBe('*/2 * * * *');

    const text = await tally('disable', 'tally-heartbeat');
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('tally-heartbeat: */2 * * * * (override) → disabled (would run */2 * * * *)');
    expect(text.stdout).toContain('pg-boss schedule removed: running workers stop sending it within a minute');
    expect(await bossSchedules()).not.toHaveProperty('tally-heartbeat');
    expect(await overrides()).toContainEqual(expect.objectContaining({ job: 'tally-heartbeat', cron: '*/2 * * * *', enabled: false }));
    // disabling twice changes nothing
    expect(await change('disable', 'tally-heartbeat')).toMatchObject({ changed: false, after: { source: 'disabled', enabled: false } });

    // a worker started while it is disabled leaves it unscheduled
    await withWorker(async (worker) => {
      expect(worker.disabled).toEqual(['tally-heartbeat', 'tally-retention']);
      expect(await bossSchedules()).not.toHaveProperty('tally-heartbeat');
    });

    // enable brings the override back, not the default
    expect(await change('enable', 'tally-heartbeat')).toMatchObject({
      before: { source: 'disabled', enabled: false },
      after: { schedule: '*/2 * * * *', source: 'override', enabled: true },
      reaches: 'pg-boss',
    });
    expect((await bossSchedules())['tally-heartbeat']).toBe('*/2 * * * *');
    expect(await change('enable', 'tally-retention')).toMatchObject({ after: { schedule: '57 3 * * *', source: 'default' }, reaches: 'pg-boss' });
    expect((await bossSchedules())['tally-retention']).toBe('57 3 * * *');

    // set keeps a disabled job disabled, and says so
    await change('disable', 'tally-verify-rollups');
    const whileDisabled = await tally('set', 'tally-verify-rollups', '15 4 * * *');
    expect(whileDisabled.stdout).toContain('tally-verify-rollups stays disabled: `tally schedule enable tally-verify-rollups` runs it on this schedule.');
    expect(await bossSchedules()).not.toHaveProperty('tally-verify-rollups');
    expect(await change('enable', 'tally-verify-rollups')).toMatchObject({ after: { schedule: '15 4 * * *', source: 'override' } });

    // reset forgets the override: no row, the default in pg-boss, and in the next worker
    for (const job of ['tally-heartbeat', 'tally-verify-rollups']) {
      expect(await change('reset', job)).toMatchObject({ after: { source: 'default', enabled: true }, reaches: 'pg-boss' });
    }
    expect(await overrides()).toEqual([]);
    expect(await bossSchedules()).toEqual(defaults());
    await withWorker(async (worker) => {
      expect(worker.disabled).toEqual([]);
      expect(await bossSchedules()).toEqual(defaults());
    });
    expect((await list()).jobs.every((j) => j.source === 'default' && j.pending === null)).toBe(true);
  });

  it('tally status shows overridden and disabled jobs, and an override made in SQL as pending', async () => {
    await change('set', 'tally-ensure-partitions', '5 1 * * *');
    await change('disable', 'tally-purge-idempotency-keys');
    // written in SQL: pg-boss does not know yet
    await db.pool.query("select tally.set_job_schedule(p_job => 'tally-retention', p_cron => '0 2 * * *', p_enabled => true)");

    const status = await runCli(['status', '--json'], env);
    const jobs = Object.fromEntries((JSON.parse(status.stdout).jobs as { name: string }[]).map((j) => [j.name, j]));
    expect(jobs['tally-ensure-partitions']).toMatchObject({ cron: '5 1 * * *', source: 'override', scheduled: true });
    expect(jobs['tally-purge-idempotency-keys']).toMatchObject({ source: 'disabled', scheduled: false });
    expect(jobs['tally-purge-idempotency-keys']).not.toHaveProperty('pending');
    expect(jobs['tally-retention']).toMatchObject({ cron: '57 3 * * *', source: 'override', pending: '0 2 * * *' });
    expect(jobs['tally-heartbeat']).toMatchObject({ cron: '* * * * *', source: 'default' });

    const text = await runCli(['status'], env);
    expect(text.stdout).toMatch(/tally-ensure-partitions +5 1 \* \* \* \(override\) /);
    expect(text.stdout).toMatch(/tally-purge-idempotency-keys +disabled /);
    expect(text.stdout).toMatch(/tally-retention +57 3 \* \* \* .*\[pending: 0 2 \* \* \* at the next worker start\]/);

    const listed = await list();
    expect(listed.jobs.find((j) => j.name === 'tally-retention')).toMatchObject({ schedule: '0 2 * * *', source: 'override', pending: '0 2 * * *' });
    expect((await tally('list')).stdout).toContain('pending: pg-boss still has the old schedule; 0 2 * * * applies at the next worker start');

    // `tally schedule set` (or a worker start) brings pg-boss in line
    await change('set', 'tally-retention', '0 2 * * *');
    expect((await list()).jobs.find((j) => j.name === 'tally-retention')?.pending).toBeNull();
    for (const job of ['tally-ensure-partitions', 'tally-purge-idempotency-keys', 'tally-retention']) await change('reset', job);
    expect(await bossSchedules()).toEqual(defaults());
  });

  it('a pg-boss schedule that cannot be rewritten changes nothing: exit 1, pg_boss_unavailable', async () => {
    await db.pool.query('alter table pgboss.schedule rename to schedule_away');
    try {
      const result = await tally('set', 'tally-heartbeat', '*/7 * * * *');
      expect(result.code).toBe(1);
      expect(result.stdout).toBe('');
      expect(result.stderr).toMatch(/^error \[pg_boss_unavailable\]: nothing changed: pg-boss's schedule could not be updated \(.*schedule.*\)/);
    } finally {
      await db.pool.query('alter table pgboss.schedule_away rename to schedule');
    }
    expect(await overrides()).toEqual([]);
    expect(await bossSchedules()).toEqual(defaults());
  });

  it('tally-rollups takes an interval: written to rollups.interval, followed by a running worker without a restart', async () => {
    const set = await change('set', 'tally-rollups', '1s');
    expect(set).toMatchObject({
      before: { kind: 'interval', schedule: '5 seconds', source: 'default', enabled: true },
      after: { kind: 'interval', schedule: '1s', source: 'override', enabled: true },
      reaches: 'next-tick',
      nextRunAt: null,
    });
    expect(await rollupsInterval()).toBe('1s');
    expect(await overrides()).toEqual([]); // the interval lives in tally.settings
    // an interval equal to the default reads as the default, however it is written
    expect(await change('set', 'tally-rollups', '5 s')).toMatchObject({ after: { schedule: '5 s', source: 'default' } });
    await change('set', 'tally-rollups', '1 second');

    await withWorker(async (_worker, log) => {
      const rollupJobs = async () => Number((await db.pool.query("select count(*) from pgboss.job where name = 'tally-rollups'")).rows[0].count);

      // a new interval is read at the next tick
      await change('set', 'tally-rollups', '2 seconds');
      await waitForLine(log, /^job tally-rollups: now every 2 seconds \(was every 1 second\)$/);

      // disabled: the worker stops offering it (but keeps ticking, to see it enabled again)
      const disable = await tally('disable', 'tally-rollups');
      expect(disable.stdout).toContain('tally-rollups: every 2 seconds (override) → disabled (would run every 2 seconds)');
      expect(disable.stdout).toContain('Running workers pick it up at their next tick (within 2 seconds)');
      expect(await overrides()).toEqual([expect.objectContaining({ job: 'tally-rollups', cron: null, enabled: false })]);
      await waitForLine(log, /^job tally-rollups: now disabled \(was every 2 seconds\)$/);
      const offered = await rollupJobs();
      // a tick the worker makes while disabled (it logs the new interval it read) offers nothing
      await change('set', 'tally-rollups', '3 seconds');
      await waitForLine(log, /^job tally-rollups: now disabled \(was disabled\)$/);
      expect(await rollupJobs()).toBe(offered);
      await change('enable', 'tally-rollups');
      await waitForLine(log, /^job tally-rollups: now every 3 seconds \(was disabled\)$/);
      // offered again
      await eventually(async () => expect(await rollupJobs()).toBeGreaterThan(offered));
    });

    const reset = await change('reset', 'tally-rollups');
    expect(reset).toMatchObject({ after: { schedule: '5 seconds', source: 'default', enabled: true } });
    expect(await rollupsInterval()).toBe('5 seconds');
    expect(await overrides()).toEqual([]);
  });

  it('a worker survives a hand-written override it cannot run, and list reports it and unknown jobs', async () => {
    // five fields pass the table's CHECK, but minute 61 is no cron: the worker falls back to the default
    await db.pool.query("insert into tally.job_schedules (job, cron) values ('tally-heartbeat', '61 * * * *'), ('tally-gone', '0 0 * * *')");
    try {
      await withWorker(async (_worker, log) => {
        expect((await bossSchedules())['tally-heartbeat']).toBe('* * * * *');
        expect(log).toContain('tally.job_schedules names no known job: tally-gone (ignored)');
        expect(log.some((l) => /^job tally-heartbeat: stored cron "61 \* \* \* \*" cannot run \(minute field "61": .*\); the default runs instead$/.test(l))).toBe(true);
      });
      const listed = await list();
      expect(listed.unknownOverrides).toEqual([{ job: 'tally-gone', cron: '0 0 * * *', enabled: true }]);
      expect(listed.jobs.find((j) => j.name === 'tally-heartbeat')).toMatchObject({ schedule: '* * * * *', source: 'override', problem: expect.stringMatching(/minute field/) });
      const text = await tally('list');
      expect(text.stdout).toContain('warning: tally.job_schedules has a row for tally-gone, which is not a Tally job (ignored)');
      expect(text.stdout).toMatch(/warning: stored cron "61 \* \* \* \*"/);
      // tally status shows what runs (the default) and the same warning, not "(override)"
      const status = await runCli(['status'], env);
      expect(status.stdout).toMatch(/^ {2}tally-heartbeat +\* \* \* \* \* +(?!\(override\))/m);
      expect(status.stdout).toMatch(/^ {4}warning: stored cron "61 \* \* \* \*" cannot run/m);
    } finally {
      await db.pool.query('delete from tally.job_schedules');
    }
  });

  it('a change waits for another change of the same job to commit, and builds on it', async () => {
    const job = 'tally-purge-idempotency-keys';
    const other = await db.pool.connect();
    try {
      await other.query('begin');
      await other.query("select tally.set_job_schedule($1, '0 4 * * *')", [job]);
      const disable = tally('disable', job);
      // wait (not a timing assertion) until the CLI is blocked on the job's lock
      await eventually(async () => {
        const { rows } = await db.pool.query("select count(*)::int as n from pg_locks where locktype = 'advisory' and not granted");
        if (rows[0].n === 0) throw new Error('the CLI never waited for the open change');
      });
      await other.query('commit');
      const result = await disable;
      expect(result.code, result.stderr).toBe(0);
      expect(await overrides()).toEqual([{ job, cron: '0 4 * * *', enabled: false, updated_by: 'postgres' }]);
    } finally {
      await other.query('rollback').catch(() => undefined);
      other.release();
      await db.pool.query('delete from tally.job_schedules');
    }
  });

  it('a worker starting while a schedule change is held open runs anyway, and applies the change once it commits', async () => {
    const other = await db.pool.connect();
    try {
      await other.query('begin');
      await other.query("select tally.set_job_schedule('tally-retention', '30 2 * * *')");
      await withWorker(async (worker, log) => {
        // started (its queues are worked) although the schedule lock is taken
        expect(worker.schedules.length).toBe(SCHEDULED_JOBS.length);
        await waitForLine(log, /^cron schedules not applied yet \(.*lock timeout.*\); retrying in 10 s$/);
        await other.query('commit');
        // the retry applies it (the deadline only bounds a hang)
        await eventually(async () => {
          const schedules = await bossSchedules();
          if (schedules['tally-retention'] !== '30 2 * * *') throw new Error(`never applied: ${JSON.stringify(schedules)}\n${log.join('\n')}`);
        }, { intervalMs: 200 });
      });
    } finally {
      await other.query('rollback').catch(() => undefined);
      other.release();
      await db.pool.query('delete from tally.job_schedules');
      await withWorker(async () => undefined); // pg-boss back on the defaults for the next tests
    }
  });

  it('tally.set_job_schedule: checks its input, refuses a malformed row, and is for service callers only', async () => {
    await expect(db.pool.query("select tally.set_job_schedule('tally-heartbeat', '* * * *')")).rejects.toMatchObject({ code: '22023', hint: 'invalid_parameter' });
    await expect(db.pool.query("select tally.set_job_schedule('Bad Name', null, false)")).rejects.toMatchObject({ code: '22023' });
    await expect(db.pool.query("select tally.set_job_schedule('tally-heartbeat', null, null)")).rejects.toMatchObject({ code: '22023' });
    await expect(db.pool.query("insert into tally.job_schedules (job, cron) values ('tally-heartbeat', '* * *')")).rejects.toMatchObject({ code: '23514' });

    // service_role: stored with who did it; the default again deletes the row (and returns NULL)
    const stored = await as(db.pool, service, (c) => c.query("select * from tally.set_job_schedule(p_job => 'tally-heartbeat', p_cron => '*/10 * * * *', p_enabled => true)"));
    expect(stored.rows[0]).toMatchObject({ job: 'tally-heartbeat', cron: '*/10 * * * *', enabled: true, updated_by: 'service_role' });
    const cleared = await as(db.pool, service, (c) => c.query("select tally.set_job_schedule(p_job => 'tally-heartbeat') as row"));
    expect(cleared.rows[0].row).toBeNull();
    expect(await overrides()).toEqual([]);

    const member = await createUser(db.pool);
    await expect(as(db.pool, user(member), (c) => c.query("select tally.set_job_schedule('tally-heartbeat', null, false)"))).rejects.toMatchObject({ code: '42501' });
    await expect(as(db.pool, user(member), (c) => c.query('select * from tally.job_schedules'))).rejects.toMatchObject({ code: '42501' });
  });

  it('needs schema version 18: an uninstalled schema fails with schema_outdated', async () => {
    const empty = await emptyDatabase();
    try {
      const result = await runCli(['schedule', 'list'], cleanEnv({ DATABASE_URL: empty.url }));
      expect(result.code).toBe(1);
      expect(result.stderr.trim()).toBe('error [schema_outdated]: schema is not installed; schedule overrides need version 18: run `tally migrate` first');
    } finally {
      await empty.drop();
    }
  });

  it('answers --help on every subcommand', async () => {
    const top = await tally('--help');
    expect(top.code).toBe(0);
    expect(top.stdout).toContain('Usage: tally schedule');
    expect(top.stdout).toMatch(/tally.job_schedules/);
    expect(top.stdout).toMatch(/pg_cron/);
    for (const sub of ['list', 'set', 'disable', 'enable', 'reset']) {
      const help = await tally(sub, '--help');
      expect(help.code, sub).toBe(0);
      expect(help.stdout).toContain(`Usage: tally schedule ${sub}`);
    }
  });
});

describe('an installation upgraded to migration 40 (rollups every 5 seconds)', () => {
  it('follows the new default when it ran on the old one, and keeps an interval set by hand', async () => {
    const onDefault = await emptyDatabase();
    const setByHand = await emptyDatabase();
    try {
      const setting = async (d: TestDatabase) =>
        (await d.pool.query("select value, default_value from tally.settings where name = 'rollups.interval'")).rows[0];
      const updatedAt = async (d: TestDatabase) =>
        (await d.pool.query("select updated_at from tally.settings where name = 'rollups.interval'")).rows[0].updated_at as Date;
      for (const d of [onDefault, setByHand]) await migrateBefore(d.url, '00040_rollups-every-5-seconds.sql');
      expect(await setting(onDefault)).toEqual({ value: '10 seconds', default_value: '10 seconds' });
      await setByHand.pool.query("select tally.set_setting('rollups.interval', '30 seconds')");
      const before = { onDefault: await updatedAt(onDefault), setByHand: await updatedAt(setByHand) };
      for (const d of [onDefault, setByHand]) await runMigrations(d.url);
      expect(await setting(onDefault)).toEqual({ value: '5 seconds', default_value: '5 seconds' });
      expect(await setting(setByHand)).toEqual({ value: '30 seconds', default_value: '5 seconds' });
      // a changed value says when it changed; a kept one keeps its time
      expect((await updatedAt(onDefault)).getTime()).toBeGreaterThan(before.onDefault.getTime());
      expect(await updatedAt(setByHand)).toEqual(before.setByHand);
      const { rows: described } = await onDefault.pool.query("select description from tally.settings where name = 'rollups.interval'");
      expect(described[0].description).toContain('default 5 seconds');
      // resetting goes to the new default
      await setByHand.pool.query("select tally.set_setting('rollups.interval', null)");
      expect(await setting(setByHand)).toEqual({ value: '5 seconds', default_value: '5 seconds' });
    } finally {
      await onDefault.drop();
      await setByHand.drop();
    }
  });
});
