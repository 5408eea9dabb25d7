/**
 * `tally status`: what is installed and whether the worker is doing its job.
 * Read-only: it never installs or migrates anything.
 */
import pg from 'pg';
import { rollupsApi, type UnpricedModel } from '../client/rollups.ts';
import { connectClient } from '../database/resolve.ts';
import { errorMessage } from '../errors.ts';
import { migrationFiles, readSchemaVersion } from '../database/migrate.ts';
import { JOB_SCHEDULES_VERSION, pendingChange, readSchedules, type JobSchedule, type ScheduleSource } from './overrides.ts';
import { SCHEDULED_JOBS } from './jobs.ts';
import { INSTANCE_STALE_BEATS, WORKER_NAME, bossInstalled, withObserver } from './boss.ts';

export interface JobStatus {
  name: string;
  /** What pg-boss has scheduled (cron jobs), or `every <interval>` (the interval job). */
  cron: string | undefined;
  scheduled: boolean;
  /** Whether tally.job_schedules overrides the job (schema 18 and later). */
  source?: ScheduleSource | undefined;
  /** The schedule (or `disabled`) tally.job_schedules asks for and pg-boss does not have yet. */
  pending?: string | undefined;
  /** A stored override the worker cannot run (written by hand in SQL): the default runs instead. */
  problem?: string | undefined;
  runs: number;
  failures: number;
  lastFinishedAt: Date | undefined;
  lastOk: boolean | undefined;
  lastError: string | undefined;
}

export interface WorkerInstance {
  host: string;
  pid: number;
  startedOn: Date;
  /** When the worker was last seen (its last beat in pgboss.instance). */
  heartbeatOn: Date;
  /** Seconds since then, by the database's clock. */
  lastSeenSecondsAgo: number;
  /** How often it beats. */
  heartbeatSeconds: number;
  /** Running: it beat within INSTANCE_STALE_BEATS beats (and did not stop). */
  live: boolean;
  /** Not stopped, but silent for INSTANCE_STALE_BEATS beats or more: presumed dead (killed, or cut off). */
  presumedDead: boolean;
}

/** A worker silent for longer than this is no longer listed (it died long ago). */
const FORGET_DEAD_AFTER_SECONDS = 3600;

export interface LedgerStatus {
  /** Rows waiting in tally.events_default (outside every monthly partition). */
  defaultPartitionRows: number;
  /** The last month with a partition, as YYYY-MM (UTC). */
  partitionedThrough: string | undefined;
  /** Items refused by ingestion in the last 24 hours (tally.rejected_events). */
  rejectedLastDay: number;
}

export interface RollupStatus {
  watermark: number;
  newestEventId: number;
  pendingEvents: number;
  oldestPendingAgeSeconds: number | null;
  lastRunFinishedAt: Date | null;
  lastRunEvents: number | null;
  /** UTC hours in which an account has pending (not voided) events of a dimension tuple with no hourly row yet (migration 20 on). */
  unaggregatedHours?: number | undefined;
  oldestUnaggregatedHour?: Date | null | undefined;
  /** The latest scheduled run's outcome and error (migration 20 on; undefined: never recorded). */
  lastRunOk?: boolean | null | undefined;
  lastError?: string | null | undefined;
}

/** The schema version that added tally.unpriced_models (the unpriced-events migration). */
const UNPRICED_MODELS_VERSION = 22;

/** How far back `tally status` looks for unpriced models (tally.unpriced_models reads only this window). */
export const UNPRICED_WINDOW_DAYS = 7;

export interface Status {
  /** Why the worker state could not be read (e.g. pg-boss's schema needs an upgrade). */
  workerError?: string | undefined;
  schemaVersion: number | undefined;
  latestVersion: number;
  pendingMigrations: number;
  workers: WorkerInstance[];
  jobs: JobStatus[];
  /** The events ledger, once migration 7 is installed. */
  ledger?: LedgerStatus | undefined;
  /** The rollups, once migration 12 is installed. */
  rollups?: RollupStatus | undefined;
  /** Models with unpriced LLM events in the last UNPRICED_WINDOW_DAYS days, once tally.unpriced_models exists. */
  unpriced?: UnpricedModel[] | undefined;
}

export interface JobRunRow {
  job: string;
  runs: string;
  failures: string;
  last_finished_at: Date | null;
  last_ok: boolean | null;
  last_error: string | null;
}

/** tally.job_runs by job name. */
export async function readJobRuns(client: Pick<pg.ClientBase, 'query'>): Promise<Map<string, JobRunRow>> {
  const { rows } = await client.query<JobRunRow>('select job, runs, failures, last_finished_at, last_ok, last_error from tally.job_runs');
  return new Map(rows.map((r) => [r.job, r]));
}

export async function readStatus(connectionString: string): Promise<Status> {
  const client = await connectClient(connectionString, 'tally-status');
  let schemaVersion: number | undefined;
  let runs = new Map<string, JobRunRow>();
  let bossReady = false;
  let overrides: Map<string, JobSchedule> | undefined;
  let ledger: LedgerStatus | undefined;
  let rollups: RollupStatus | undefined;
  let unpriced: UnpricedModel[] | undefined;
  let clockOffsetMs = 0;
  try {
    schemaVersion = await readSchemaVersion(client);
    if (schemaVersion !== undefined && schemaVersion >= 3) runs = await readJobRuns(client);
    if (schemaVersion !== undefined && schemaVersion >= JOB_SCHEDULES_VERSION) {
      overrides = new Map((await readSchedules(client)).schedules.map((s) => [s.job.name, s]));
    }
    if (schemaVersion !== undefined && schemaVersion >= 7) ledger = await readLedgerStatus(client);
    if (schemaVersion !== undefined && schemaVersion >= 12) rollups = await readRollupStatus(client);
    if (schemaVersion !== undefined && schemaVersion >= UNPRICED_MODELS_VERSION) {
      unpriced = await rollupsApi(client).unpricedModels({ windowDays: UNPRICED_WINDOW_DAYS });
    }
    bossReady = await bossInstalled(client);
    // ages by the database's clock (heartbeats are written with it), not this machine's
    const { rows } = await client.query<{ now: Date }>('select clock_timestamp() as now');
    clockOffsetMs = (rows[0]?.now.getTime() ?? Date.now()) - Date.now();
  } finally {
    await client.end().catch(() => undefined);
  }

  const files = await migrationFiles();
  const latestVersion = files.at(-1)?.id ?? 0;
  const pendingMigrations = files.filter((f) => f.id > (schemaVersion ?? 0)).length;

  let workers: WorkerInstance[] = [];
  let workerError: string | undefined;
  const schedules = new Map<string, string>();
  if (bossReady) {
    try {
      // The observer never migrates pg-boss's schema; after a pg-boss upgrade the next
      // `tally start` or `tally worker` does, and until then status says so.
      await withObserver(connectionString, async (boss) => {
        for (const s of await boss.getSchedules()) schedules.set(s.name, s.cron);
        const now = Date.now() + clockOffsetMs;
        workers = (await boss.getInstances())
          .filter((i) => i.name === WORKER_NAME && i.stoppedOn === null)
          .map((i) => {
            const lastSeenSecondsAgo = Math.max(0, Math.round((now - new Date(i.heartbeatOn).getTime()) / 1000));
            const heartbeatSeconds = Number(i.heartbeatSeconds);
            const presumedDead = lastSeenSecondsAgo > heartbeatSeconds * INSTANCE_STALE_BEATS;
            return { host: i.host, pid: i.pid, startedOn: i.startedOn, heartbeatOn: i.heartbeatOn, lastSeenSecondsAgo, heartbeatSeconds, live: i.live && !presumedDead, presumedDead };
          })
          .filter((w) => w.lastSeenSecondsAgo <= FORGET_DEAD_AFTER_SECONDS);
      });
    } catch (err) {
      workerError = errorMessage(err);
    }
  }

  const jobs = SCHEDULED_JOBS.map((job) => {
    const run = runs.get(job.name);
    const override = overrides?.get(job.name);
    const enabled = override?.enabled ?? true;
    const cron = job.everySetting ? `every ${override?.schedule ?? job.everySetting}` : schedules.get(job.name);
    return {
      name: job.name,
      cron,
      // an interval job is offered by every running worker rather than by a cron schedule
      scheduled: job.everySetting ? enabled && workers.some((w) => w.live) : schedules.has(job.name),
      source: override?.source,
      pending: bossReady && !workerError && override ? pendingChange(override, cron) : undefined,
      problem: override?.problem,
      runs: Number(run?.runs ?? 0),
      failures: Number(run?.failures ?? 0),
      lastFinishedAt: run?.last_finished_at ?? undefined,
      lastOk: run?.last_ok ?? undefined,
      lastError: run?.last_error ?? undefined,
    };
  });
  return { workerError, schemaVersion, latestVersion, pendingMigrations, workers, jobs, ledger, rollups, unpriced };
}

async function readRollupStatus(client: pg.Client): Promise<RollupStatus> {
  const r = await rollupsApi(client).rollupStatus();
  return {
    watermark: Number(r.watermark),
    newestEventId: Number(r.newestEventId),
    pendingEvents: r.pendingEvents,
    oldestPendingAgeSeconds: r.oldestPendingAgeSeconds,
    lastRunFinishedAt: r.lastRunFinishedAt,
    lastRunEvents: r.lastRunEvents,
    unaggregatedHours: r.unaggregatedHours,
    oldestUnaggregatedHour: r.oldestUnaggregatedHour,
    lastRunOk: r.lastRunOk,
    lastError: r.lastError,
  };
}

async function readLedgerStatus(client: pg.Client): Promise<LedgerStatus> {
  const { rows } = await client.query<{ default_rows: string; through: string | null; rejected: string }>(`
    select (select count(*) from tally.events_default) as default_rows,
           (select max(substring(c.relname from 'events_p([0-9]{4}_[0-9]{2})'))
              from pg_catalog.pg_inherits i join pg_catalog.pg_class c on c.oid = i.inhrelid
             where i.inhparent = 'tally.events'::regclass) as through,
           (select count(*) from tally.rejected_events where received_at > now() - interval '1 day') as rejected`);
  const row = rows[0];
  return {
    defaultPartitionRows: Number(row?.default_rows ?? 0),
    partitionedThrough: row?.through?.replace('_', '-') ?? undefined,
    rejectedLastDay: Number(row?.rejected ?? 0),
  };
}

export function ago(date: Date, now = Date.now()): string {
  const seconds = Math.max(0, Math.round((now - date.getTime()) / 1000));
  if (seconds < 120) return `${seconds}s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m ago`;
  return `${Math.round(seconds / 3600)}h ago`;
}

export function formatStatus(status: Status, database: string): string {
  const lines = [`database:  ${database}`];
  lines.push(
    status.schemaVersion === undefined
      ? `schema:    not installed (run \`tally migrate\`; ${status.latestVersion} migrations available)`
      : `schema:    version ${status.schemaVersion}` +
          (status.pendingMigrations > 0 ? ` (${status.pendingMigrations} pending: run \`tally migrate\`)` : ' (up to date)'),
  );
  const live = status.workers.filter((w) => w.live);
  const dead = status.workers.filter((w) => w.presumedDead);
  lines.push(
    status.workerError
      ? `worker:    unknown (${status.workerError}; \`tally start\` or \`tally worker\` upgrades pg-boss)`
      : live.length > 0
      ? `worker:    ${live.length} running (${live
          .map((w) => `${w.host} pid ${w.pid}, up since ${w.startedOn.toISOString()}, last seen ${w.lastSeenSecondsAgo} s ago`)
          .join('; ')})`
      : 'worker:    none running (start one with `tally worker` or `tally start`)',
  );
  for (const w of dead) {
    lines.push(`           ${w.host} pid ${w.pid}: last seen ${w.lastSeenSecondsAgo} s ago, presumed dead (it beats every ${w.heartbeatSeconds} s; killed, or cut off from the database)`);
  }
  if (status.ledger) {
    const { defaultPartitionRows, partitionedThrough, rejectedLastDay } = status.ledger;
    lines.push(
      `ledger:    partitions through ${partitionedThrough ?? 'none'}; ` +
        (defaultPartitionRows > 0
          ? `${defaultPartitionRows} events in the default partition (run \`select tally.ensure_partitions()\`)`
          : 'default partition empty') +
        `; ${rejectedLastDay} rejected in the last 24 h (tally.rejected_events)`,
    );
  }
  if (status.rollups) {
    const r = status.rollups;
    lines.push(
      `rollups:   watermark ${r.watermark} of ${r.newestEventId}; ${r.pendingEvents} events pending` +
        (r.oldestPendingAgeSeconds === null ? '' : ` (oldest ${Math.round(r.oldestPendingAgeSeconds)} s)`) +
        (r.lastRunFinishedAt ? `; last run ${ago(r.lastRunFinishedAt)} (${r.lastRunEvents ?? 0} events)` : '; never run (`select tally.run_rollups()`)'),
    );
    if (r.unaggregatedHours) {
      lines.push(
        `           ${r.unaggregatedHours} hour(s) with events but no aggregate yet` +
          (r.oldestUnaggregatedHour ? ` (oldest ${r.oldestUnaggregatedHour.toISOString().slice(0, 13)}:00Z)` : '') +
          '; the *_live views include them, the stored tables will after the next run',
      );
    }
    if (r.lastRunOk === false) lines.push(`           latest scheduled run FAILED: ${r.lastError || '(no error recorded)'}`);
  }
  if (status.unpriced) lines.push(...formatUnpriced(status.unpriced));
  lines.push('schedules:');
  for (const job of status.jobs) {
    const last = job.lastFinishedAt
      ? `last run ${ago(job.lastFinishedAt)} ${job.lastOk ? 'ok' : `FAILED: ${job.lastError ?? ''}`}`
      : 'never run';
    // what runs now; an override a worker has not applied yet is shown after the counts
    const now = job.cron ?? 'not scheduled';
    const overridden = job.source === 'override' && !job.problem;
    const shown = job.pending ? now : job.source === 'disabled' ? 'disabled' : overridden ? `${now} (override)` : now;
    const pending = job.pending ? ` [pending: ${job.pending} at the next worker start]` : '';
    lines.push(`  ${job.name.padEnd(29)} ${shown.padEnd(22)} ${last} (${job.runs} runs, ${job.failures} failed)${pending}`);
    if (job.problem) lines.push(`    warning: ${job.problem}`);
  }
  return lines.join('\n');
}

const UNPRICED_SHOWN = 10;

/** The unpriced models, most events first: their cost is unknown, and the rollups count it as 0. */
export function formatUnpriced(models: UnpricedModel[]): string[] {
  if (models.length === 0) return [`unpriced:  no LLM events without a price in the last ${UNPRICED_WINDOW_DAYS} days`];
  const total = models.reduce((n, m) => n + m.events, 0);
  const lines = [
    `unpriced:  ${total} LLM event(s) in the last ${UNPRICED_WINDOW_DAYS} days matched no price; their cost is unknown, not $0 (column unpriced):`,
  ];
  for (const m of models.slice(0, UNPRICED_SHOWN)) {
    lines.push(
      `             ${m.provider ?? '(no provider)'} / ${m.model ?? '(no model)'}: ${m.events} event(s) in ${m.accounts} account(s), ` +
        `last seen ${m.lastSeenHour.toISOString().slice(0, 13)}:00Z`,
    );
  }
  if (models.length > UNPRICED_SHOWN) lines.push(`             … and ${models.length - UNPRICED_SHOWN} more (--json lists all)`);
  lines.push('           price a model with tally.set_model_price, then tally.reprice the range (model names match exactly)');
  return lines;
}
