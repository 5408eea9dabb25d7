/**
 * The pg-boss worker: installs the schedules of SCHEDULED_JOBS and runs their SQL.
 *
 * pg-boss delivers at least once, so every job is an idempotent SQL function; the queue
 * only decides when it runs. Queues use the `stately` policy: at most one job waiting and
 * one running per queue, so a worker that was down does not come back to a pile-up.
 */
import type pg from 'pg';
import type { PgBoss } from 'pg-boss';
import { createPool } from '../database/pool.ts';
import { connectClient } from '../database/resolve.ts';
import { withTransaction } from '../database/transaction.ts';
import { errorMessage } from '../errors.ts';
import { isTransient } from '../client/errors.ts';
import { JOB_SCHEDULE_LOCK_SQL, applyCronSchedule, readSchedules, type JobSchedule } from './overrides.ts';
import { SCHEDULED_JOBS, type ScheduledJob } from './jobs.ts';
import { WORKER_NAME, createBoss } from './boss.ts';

/** How often a running job proves its worker is alive (pg-boss's minimum). */
const HEARTBEAT_SECONDS = 10;

export interface Worker {
  readonly schedules: readonly ScheduledJob[];
  /** The jobs disabled in tally.job_schedules when the worker started (their queues are still worked). */
  readonly disabled: readonly string[];
  /** Runs one scheduled job now, outside the schedule (used by tests). */
  runNow(name: string): Promise<unknown>;
  /** Stops taking jobs, waits for running ones (up to timeoutMs), closes connections. */
  stop(timeoutMs?: number): Promise<void>;
}

export interface WorkerOptions {
  connectionString: string;
  log?: (line: string) => void;
}

/** How many times a job is tried when its connection is lost (then it fails and is recorded as failed). */
const CONNECTION_ATTEMPTS = 5;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A pool client with an 'error' listener, so a connection cut while it is checked out fails its query instead of the process. */
async function checkout(pool: pg.Pool): Promise<{ client: pg.PoolClient; lost: () => unknown; release: () => void }> {
  const client = await pool.connect();
  let lost: unknown;
  const onError = (err: Error) => (lost ??= err);
  client.on('error', onError);
  return {
    client,
    lost: () => lost,
    release: () => {
      client.off('error', onError);
      // a broken connection is destroyed, not returned to the pool
      client.release(lost === undefined ? undefined : lost instanceof Error ? lost : true);
    },
  };
}

/** The job's SQL on one connection; repeated while a backlog job reports more, within its expiry. */
async function runSql(client: pg.PoolClient, job: ScheduledJob, startedAt: Date): Promise<unknown> {
  let result: unknown = null;
  const budgetEnds = startedAt.getTime() + job.expireInSeconds * 500;
  for (let calls = 1; ; calls++) {
    const { rows } = await client.query<{ result: unknown }>(job.sql);
    result = rows[0]?.result ?? null;
    // more work, unless the run stopped to wait for a transaction still writing events:
    // calling again at once would only spin until that transaction ends
    const report = result as { more?: unknown; waiting_for_pids?: unknown } | null;
    const more = report?.more === true && report.waiting_for_pids === undefined;
    if (!job.repeatWhileMore || !more || Date.now() > budgetEnds) {
      if (job.repeatWhileMore && calls > 1 && result && typeof result === 'object') result = { ...result, calls };
      return result;
    }
  }
}

const RECORD_SQL = `select tally.record_job_run(p_job => $1::text, p_started_at => $2::timestamptz, p_finished_at => $3::timestamptz,
   p_ok => $4::boolean, p_result => $5::jsonb, p_error => $6::text)`;

interface JobContext {
  pool: pg.Pool;
  running: Set<number>;
  log: (line: string) => void;
  /** True once the worker is stopping: a lost connection is then not retried. */
  stopping: () => boolean;
}

/**
 * Runs a job's SQL and records the outcome in tally.job_runs, on the same connection when
 * it is still up (so the record is written even while the pool is shutting down).
 * `running` holds the backend pids of jobs in flight, so a stop past its timeout can cancel
 * them. A lost connection (terminated backend, server restart, network cut) never escapes as
 * an 'error' event: the job is tried again on a new connection (every job is idempotent),
 * up to CONNECTION_ATTEMPTS times. Throws if the job failed.
 */
async function runJob(ctx: JobContext, job: ScheduledJob): Promise<unknown> {
  const startedAt = new Date();
  let result: unknown = null;
  let failure: unknown;
  let recorded = false;
  for (let attempt = 1; ; attempt++) {
    failure = undefined;
    let held: Awaited<ReturnType<typeof checkout>> | undefined;
    try {
      held = await checkout(ctx.pool);
      const pid = (held.client as unknown as { processID: number }).processID;
      ctx.running.add(pid);
      try {
        result = await runSql(held.client, job, startedAt);
      } catch (err) {
        failure = err;
      } finally {
        ctx.running.delete(pid); // done running: a stop past its deadline must not cancel the record below
      }
      if (failure === undefined || !isTransient(failure)) {
        await held.client.query(RECORD_SQL, recordArgs(job, startedAt, result, failure));
        recorded = true;
      }
    } catch (err) {
      // the connection failed outside the job's SQL (connect, or the record): same as a lost run
      failure ??= err;
    } finally {
      held?.release();
    }
    if (recorded || !isTransient(failure) || attempt >= CONNECTION_ATTEMPTS || ctx.stopping()) break;
    ctx.log(`job ${job.name}: connection lost (${errorMessage(failure)}); trying again (${attempt + 1} of ${CONNECTION_ATTEMPTS})`);
    await sleep(Math.min(attempt, 5) * 1000);
    if (ctx.stopping()) break; // stopped meanwhile: record the failure, do not start again
  }
  if (!recorded) {
    // the run itself could not finish (or record) on a connection: record the failure on a new one
    try {
      await ctx.pool.query(RECORD_SQL, recordArgs(job, startedAt, result, failure));
    } catch (err) {
      ctx.log(`job ${job.name}: could not record the run in tally.job_runs: ${errorMessage(err)}`);
    }
  }
  if (failure !== undefined) throw failure;
  return result;
}

function recordArgs(job: ScheduledJob, startedAt: Date, result: unknown, failure: unknown): unknown[] {
  const ok = failure === undefined;
  return [job.name, startedAt, new Date(), ok, JSON.stringify(result), ok ? null : errorMessage(failure)];
}

/** Cancels the queries of jobs still running (they then record themselves as failed). */
async function cancelRunning(connectionString: string, running: Set<number>): Promise<void> {
  if (running.size === 0) return;
  const client = await connectClient(connectionString, WORKER_NAME);
  try {
    await client.query('select pg_cancel_backend(pid) from unnest($1::int[]) as pid', [[...running]]);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Offers an interval job (everySetting) to pg-boss every interval: cron stops at one minute.
 * Every worker offers the job; pg-boss keeps one per interval slot across all of them, the
 * stately queue one waiting and one running, and the SQL itself refuses a second concurrent
 * run. Each tick re-reads the interval and the enabled flag (one small query), so
 * `tally schedule set|disable|enable` reaches a running worker at its next tick, and the
 * timer is re-armed with the new interval.
 */
function offerEveryInterval(pool: pg.Pool, boss: PgBoss, first: JobSchedule, log: (line: string) => void): { stop(): void } {
  const { job } = first;
  let current = first;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const seconds = () => current.intervalSeconds ?? 5; // always set for an interval job (5: rollups.interval's default)
  const tick = async () => {
    try {
      const [latest] = (await readSchedules(pool, [job])).schedules;
      if (latest && (latest.intervalSeconds !== current.intervalSeconds || latest.enabled !== current.enabled)) {
        log(`job ${job.name}: now ${latest.enabled ? `every ${latest.schedule}` : 'disabled'} (was ${current.enabled ? `every ${current.schedule}` : 'disabled'})`);
      }
      current = latest ?? current;
      // pg-boss's throttle slots are whole seconds (a fractional one fails every send)
      if (current.enabled) await boss.sendThrottled(job.name, null, null, Math.max(1, Math.round(seconds())), job.name);
    } catch (err) {
      if (!stopped) log(`job ${job.name}: ${errorMessage(err)}`);
    }
    if (stopped) return;
    timer = setTimeout(() => void tick(), seconds() * 1000);
    timer.unref();
  };
  void tick();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

/**
 * Reads the overrides and puts every cron job's schedule into pg-boss in one transaction,
 * holding the schedule lock: a `tally schedule` change that commits meanwhile waits, then
 * rewrites pg-boss itself, so a starting worker never leaves a stale schedule behind.
 * Waits at most 5 s for the lock.
 */
async function applySchedules(pool: pg.Pool, boss: PgBoss): Promise<void> {
  const client = await pool.connect();
  // a checked-out client has no pool listener: a dropped connection must fail the query, not the process
  const ignore = () => undefined;
  client.on('error', ignore);
  try {
    await withTransaction(client, async () => {
      // an open schedule change (say a psql session idle in transaction) must not hold the worker up
      await client.query(`set local lock_timeout = '5s'`);
      await client.query(JOB_SCHEDULE_LOCK_SQL);
      const read = await readSchedules(client);
      const db = { executeSql: (text: string, values?: unknown[]) => client.query(text, values) };
      for (const schedule of read.schedules) await applyCronSchedule(boss, schedule, db);
    });
  } finally {
    client.off('error', ignore);
    client.release();
  }
}

export async function startWorker(options: WorkerOptions): Promise<Worker> {
  const log = options.log ?? (() => undefined);
  const pool = createPool({ connectionString: options.connectionString, max: 2, applicationName: WORKER_NAME, onError: (err) => log(`worker pool: ${err.message}`) });
  const boss = createBoss(options.connectionString, 'worker');
  const running = new Set<number>();
  const offers: { stop(): void }[] = [];
  const disabled: string[] = [];
  let applyRetry: NodeJS.Timeout | undefined;
  let stopping: Promise<void> | undefined;
  boss.on('error', (err: Error) => log(`pg-boss: ${err.message}`));
  const ctx: JobContext = { pool, running, log, stopping: () => stopping !== undefined };

  try {
    await boss.start();
    for (const job of SCHEDULED_JOBS) {
      // createQueue keeps an existing queue as it is; updateQueue applies changed settings.
      // heartbeatSeconds: a worker killed mid-job stops beating, and pg-boss fails the job
      // within seconds instead of leaving it active (and the stately queue blocked) until it
      // expires.
      const queueOptions = { retryLimit: 0, expireInSeconds: job.expireInSeconds, heartbeatSeconds: HEARTBEAT_SECONDS };
      await boss.createQueue(job.name, { policy: 'stately', ...queueOptions });
      await boss.updateQueue(job.name, queueOptions);
    }
    const { schedules, unknown } = await readSchedules(pool);
    for (const u of unknown) log(`tally.job_schedules names no known job: ${u.job} (ignored)`);
    for (const schedule of schedules) {
      const { job } = schedule;
      if (schedule.problem) log(`job ${job.name}: ${schedule.problem}`);
      if (!schedule.enabled) {
        disabled.push(job.name);
        log(`job ${job.name}: disabled (tally schedule enable ${job.name}); it is not scheduled, but can still be run by hand`);
      } else if (schedule.source === 'override' && !schedule.problem) {
        log(`job ${job.name}: ${schedule.kind === 'cron' ? '' : 'every '}${schedule.schedule} (override; default ${schedule.default})`);
      }
      if (schedule.kind === 'interval') offers.push(offerEveryInterval(pool, boss, schedule, log));
      await boss.work(job.name, { pollingIntervalSeconds: 2 }, async () => {
        try {
          return await runJob(ctx, job);
        } catch (err) {
          log(`job ${job.name} failed: ${errorMessage(err)}`);
          throw err;
        }
      });
    }
    // The cron schedules into pg-boss, under the schedule lock. If a schedule change is
    // held open, the worker runs meanwhile (on what pg-boss has) and tries again later.
    const applyCron = async (): Promise<void> => {
      try {
        await applySchedules(pool, boss);
      } catch (err) {
        if (stopping) return;
        log(`cron schedules not applied yet (${errorMessage(err)}; is a schedule change held open?); retrying in 10 s`);
        applyRetry = setTimeout(() => void applyCron(), 10_000);
        applyRetry.unref();
      }
    };
    await applyCron();
  } catch (err) {
    clearTimeout(applyRetry);
    for (const offer of offers) offer.stop();
    await boss.stop({ graceful: false }).catch(() => undefined);
    await pool.end().catch(() => undefined);
    throw err;
  }

  return {
    schedules: SCHEDULED_JOBS,
    disabled,
    runNow(name) {
      const job = SCHEDULED_JOBS.find((j) => j.name === name);
      if (!job) throw new Error(`unknown job ${name}`);
      return runJob(ctx, job);
    },
    stop(timeoutMs = 30_000) {
      stopping ??= (async () => {
        clearTimeout(applyRetry);
        for (const offer of offers) offer.stop();
        const deadline = Date.now() + timeoutMs;
        await boss.stop({ graceful: true, timeout: timeoutMs });
        // Jobs still running past the deadline are cancelled, so stop() keeps its promise.
        while (running.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
        if (running.size > 0) {
          log(`cancelling ${running.size} job(s) still running after ${timeoutMs} ms`);
          await cancelRunning(options.connectionString, running);
        }
        await pool.end();
      })();
      return stopping;
    },
  };
}

/**
 * Runs one scheduled job now, outside pg-boss, the way the worker runs it (chunks while it
 * reports more, the outcome recorded in tally.job_runs, so `tally status` shows the run).
 * Returns the job's result; throws what the job raised.
 */
export async function runJobNow(connectionString: string, job: ScheduledJob, log: (line: string) => void = () => undefined): Promise<unknown> {
  const pool = createPool({ connectionString, max: 1, applicationName: 'tally-run' });
  try {
    return await runJob({ pool, running: new Set(), log, stopping: () => false }, job);
  } finally {
    await pool.end().catch(() => undefined);
  }
}
