/**
 * `tally schedule`: list the scheduled jobs with the schedule each one runs on, or override
 * one (`set`, `disable`, `enable`, `reset`). Overrides persist in tally.job_schedules (the
 * interval of tally-rollups in the setting rollups.interval); a worker applies them when it
 * starts, and for cron jobs this command also rewrites pg-boss's schedule at once, which
 * running workers read on their next cron pass (about every 30 s).
 */
import type pg from 'pg';
import type { PgBoss } from 'pg-boss';
import { z } from 'zod';
import { maintenanceApi } from '../client/maintenance.ts';
import { callRow } from '../client/sql.ts';
import { connectClient } from '../database/resolve.ts';
import { withTransaction } from '../database/transaction.ts';
import { TallyError, UsageError, errorMessage } from '../errors.ts';
import { readSchemaVersion } from '../database/migrate.ts';
import { InvalidParameterError } from '../client/errors.ts';
import {
  JOB_SCHEDULES_VERSION, JOB_SCHEDULE_LOCK_SQL, applyCronSchedule, cronProblem, nextCronRun, normalizeCron, pendingChange, readSchedules, type JobSchedule,
  type ScheduleSource, type UnknownOverride,
} from '../worker/overrides.ts';
import { SCHEDULED_JOBS, type ScheduledJob } from '../worker/jobs.ts';
import { ago, readJobRuns } from '../worker/status.ts';
import { bossInstalled, withObserver } from '../worker/boss.ts';
import type { Command } from 'commander';
import { withDatabase } from './context.ts';
import { jsonOnly, parseOptions } from './options.ts';

export const SCHEDULE_HELP = `
The worker runs each job on a built-in schedule (see \`tally schedule list\`). An override
changes it without a code change: it is stored in tally.job_schedules (the interval of
tally-rollups in the setting rollups.interval), so it survives restarts and upgrades.
\`reset\` goes back to the default.

  tally schedule list [--json]               every job: schedule, source, default, next and last run
  tally schedule set JOB SCHEDULE            a cron job: five fields, UTC, quoted: '*/5 * * * *'
                                             tally-rollups: an interval, e.g. 5s or '30 seconds' (1 s to 1 h)
  tally schedule disable JOB                 stop scheduling it (\`tally run JOB\` still runs it)
  tally schedule enable JOB                  schedule it again, with its override if it has one
  tally schedule reset JOB                   the default schedule, enabled

Cron expressions are checked with cron-parser, the parser pg-boss runs them with; times are
UTC. A running worker follows a cron change within about a minute (this command updates
pg-boss's schedule table, which workers read every 30 s) and an interval change at its next
tick; a worker started later applies the overrides at start. Changed in SQL instead
(select tally.set_job_schedule(...)), a cron override reaches running workers at their next
start; \`tally schedule list\` and \`tally status\` show it as pending until then.

Without the worker (e.g. on Supabase), schedule the same SQL with pg_cron: docs/operations.md
("Without the worker: pg_cron") has the cron.schedule call for every job.
Exit codes: 0 done, 1 failed, 2 bad usage (unknown job, bad cron or interval; nothing is written).`;

/** A job by name, or a UsageError listing the names. */
export function findJob(name: string): ScheduledJob {
  const job = SCHEDULED_JOBS.find((j) => j.name === name);
  if (!job) throw new UsageError(`unknown job ${JSON.stringify(name)}; the jobs are: ${SCHEDULED_JOBS.map((j) => j.name).join(', ')}`);
  return job;
}

/** Checks `set JOB SCHEDULE` before anything is written; returns the value to store. */
function checkedValue(job: ScheduledJob, value: string): string {
  if (job.everySetting) {
    // the interval itself (syntax and bounds) is checked by tally.set_setting
    if (cronProblem(value) === undefined) {
      throw new UsageError(`${job.name} runs every ${job.everySetting}, not on a cron: give an interval such as 5s or '30 seconds'`);
    }
    return value;
  }
  const problem = cronProblem(value);
  if (problem) throw new UsageError(`${job.name}: invalid cron ${JSON.stringify(value)}: ${problem}`);
  return normalizeCron(value);
}

async function connect(connectionString: string): Promise<pg.Client> {
  const client = await connectClient(connectionString, 'tally-schedule');
  const version = await readSchemaVersion(client).catch(async (err: unknown) => {
    await client.end().catch(() => undefined);
    throw err;
  });
  if (version === undefined || version < JOB_SCHEDULES_VERSION) {
    await client.end().catch(() => undefined);
    throw new TallyError(
      'schema_outdated',
      `schema is ${version === undefined ? 'not installed' : `at version ${version}`}; schedule overrides need version ${JOB_SCHEDULES_VERSION}: run \`tally migrate\` first`,
    );
  }
  return client;
}

/** Cron schedules pg-boss has now, by job; undefined when pg-boss is not installed (no worker has started here). */
async function bossSchedules(connectionString: string, client: pg.Client): Promise<Map<string, string> | undefined> {
  if (!(await bossInstalled(client))) return undefined;
  return withObserver(connectionString, async (boss) => new Map((await boss.getSchedules()).map((s) => [s.name, s.cron])));
}

// ---------------------------------------------------------------------------------------
// list
// ---------------------------------------------------------------------------------------

export interface ScheduleListEntry {
  name: string;
  kind: 'cron' | 'interval';
  /** The cron expression (UTC) or the interval it runs on; for a disabled job, the one it would run on. */
  schedule: string;
  default: string;
  source: ScheduleSource;
  enabled: boolean;
  /** Cron jobs that are enabled: the next time the schedule fires (pg-boss sends it within about 30 s). */
  nextRunAt: Date | null;
  lastRun: { finishedAt: Date; ok: boolean; error: string | null; runs: number; failures: number } | null;
  description: string;
  updatedAt: Date | null;
  updatedBy: string | null;
  /** A hand-written override the worker cannot use. */
  problem: string | null;
  /** What the override asks and pg-boss does not have yet: a cron, or `disabled`. */
  pending: string | null;
}

export interface ScheduleList {
  jobs: ScheduleListEntry[];
  /** Rows of tally.job_schedules for jobs Tally does not have. */
  unknownOverrides: UnknownOverride[];
  /** Whether pg-boss's schema exists, i.e. a worker has started here; `error` when it could not be read. */
  pgBoss: 'installed' | 'not installed' | 'error';
  pgBossError: string | null;
}

export async function listSchedules(connectionString: string, now = new Date()): Promise<ScheduleList> {
  const client = await connect(connectionString);
  let read: Awaited<ReturnType<typeof readSchedules>>;
  let runs: Awaited<ReturnType<typeof readJobRuns>>;
  let boss: Map<string, string> | undefined;
  let pgBossError: string | null = null;
  try {
    read = await readSchedules(client);
    runs = await readJobRuns(client);
    try {
      boss = await bossSchedules(connectionString, client);
    } catch (err) {
      pgBossError = errorMessage(err);
    }
  } finally {
    await client.end().catch(() => undefined);
  }
  const jobs = read.schedules.map((s): ScheduleListEntry => {
    const run = runs.get(s.job.name);
    return {
      name: s.job.name,
      kind: s.kind,
      schedule: s.schedule,
      default: s.default,
      source: s.source,
      enabled: s.enabled,
      nextRunAt: s.kind === 'cron' && s.enabled ? nextCronRun(s.schedule, now) : null,
      lastRun: run?.last_finished_at
        ? { finishedAt: run.last_finished_at, ok: run.last_ok ?? false, error: run.last_error, runs: Number(run.runs), failures: Number(run.failures) }
        : null,
      description: s.job.description,
      updatedAt: s.updatedAt,
      updatedBy: s.updatedBy,
      problem: s.problem ?? null,
      pending: boss ? (pendingChange(s, boss.get(s.job.name)) ?? null) : null,
    };
  });
  return { jobs, unknownOverrides: read.unknown, pgBoss: pgBossError ? 'error' : boss ? 'installed' : 'not installed', pgBossError };
}

const display = (s: { kind: 'cron' | 'interval'; schedule: string }) => (s.kind === 'interval' ? `every ${s.schedule}` : s.schedule);
const utc = (d: Date) => `${d.toISOString().slice(0, 16).replace('T', ' ')}Z`;

/** Left-aligned columns, each as wide as its widest cell. */
function columns(rows: string[][]): string[] {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => r[i]?.length ?? 0))) ?? [];
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  '));
}

export function formatScheduleList(list: ScheduleList, now = Date.now()): string {
  const header = ['JOB', 'SCHEDULE (UTC)', 'SOURCE', 'DEFAULT', 'NEXT RUN', 'LAST RUN'];
  const rows = list.jobs.map((j) => [
    j.name,
    display(j),
    j.source,
    display({ kind: j.kind, schedule: j.default }),
    j.nextRunAt ? utc(j.nextRunAt) : '-',
    j.lastRun ? `${ago(j.lastRun.finishedAt, now)} ${j.lastRun.ok ? 'ok' : 'FAILED'} (${j.lastRun.runs} runs, ${j.lastRun.failures} failed)` : 'never run',
  ]);
  const table = columns([header, ...rows]);
  const lines = [table[0] ?? ''];
  const indent = ' '.repeat(2);
  for (const [i, j] of list.jobs.entries()) {
    lines.push(table[i + 1] ?? '');
    lines.push(`${indent}${j.description}`);
    if (j.lastRun && !j.lastRun.ok && j.lastRun.error) lines.push(`${indent}last error: ${j.lastRun.error.split('\n')[0]}`);
    if (j.problem) lines.push(`${indent}warning: ${j.problem}`);
    if (j.pending) lines.push(`${indent}pending: pg-boss still has the old schedule; ${j.pending} applies at the next worker start (or \`tally schedule set\`)`);
  }
  for (const u of list.unknownOverrides) lines.push(`warning: tally.job_schedules has a row for ${u.job}, which is not a Tally job (ignored)`);
  if (list.pgBoss === 'not installed') lines.push('No worker has started against this database yet (no pgboss schema): the worker applies these at its first start.');
  if (list.pgBoss === 'error') lines.push(`pg-boss could not be read (${list.pgBossError}); \`tally worker\` upgrades it.`);
  lines.push('Change with `tally schedule set|disable|enable|reset JOB` (`tally schedule --help`). Times are UTC.');
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------
// set, disable, enable, reset
// ---------------------------------------------------------------------------------------

export type ScheduleAction = 'set' | 'disable' | 'enable' | 'reset';

export interface ScheduleState {
  kind: 'cron' | 'interval';
  schedule: string;
  source: ScheduleSource;
  enabled: boolean;
}

export interface ScheduleChange {
  job: string;
  action: ScheduleAction;
  before: ScheduleState;
  after: ScheduleState;
  changed: boolean;
  /** Enabled cron jobs: the next time the new schedule fires. */
  nextRunAt: Date | null;
  /**
   * How running workers learn of it: `pg-boss` (its schedule was rewritten with the override;
   * workers read it within about 30 s), `next-tick` (the interval job re-reads it every interval),
   * `worker-start` (no pg-boss yet, or no queue for the job: the worker applies it at start).
   */
  reaches: 'pg-boss' | 'next-tick' | 'worker-start';
}

const state = (s: JobSchedule): ScheduleState => ({ kind: s.kind, schedule: s.schedule, source: s.source, enabled: s.enabled });
const storedRow = z.object({ job: z.string().nullable() });

async function setOverride(client: pg.Client, job: ScheduledJob, cron: string | null, enabled: boolean): Promise<void> {
  const args = [
    ['p_job', job.name, 'text'],
    ['p_cron', cron, 'text'],
    ['p_enabled', enabled, 'boolean'],
  ] as const;
  await callRow(client, 'set_job_schedule', args, storedRow);
}

/** Writes the change in one transaction; a bad interval is refused by the database (exit 2). */
async function write(client: pg.Client, job: ScheduledJob, before: JobSchedule, action: ScheduleAction, value: string | undefined): Promise<void> {
  const setting = job.everySetting;
  try {
    if (action === 'set' && setting) await maintenanceApi(client).setSetting({ name: setting, value: value ?? null });
    else if (action === 'set') await setOverride(client, job, value ?? null, before.enabled);
    else if (action === 'disable') await setOverride(client, job, before.cronOverride, false);
    else if (action === 'enable') await setOverride(client, job, before.cronOverride, true);
    else {
      await setOverride(client, job, null, true);
      if (setting) await maintenanceApi(client).setSetting({ name: setting, value: null });
    }
  } catch (err) {
    if (err instanceof InvalidParameterError) {
      // set_setting names its argument (`value: rollups.interval must be …`): the job name says it already
      throw new UsageError(`${job.name}: ${err.field === 'value' ? err.message.slice('value: '.length) : err.message}`);
    }
    throw err;
  }
}

/** pg-boss could not be read or written: nothing changed. */
function bossUnavailable(err: unknown): TallyError {
  return new TallyError(
    'pg_boss_unavailable',
    `nothing changed: pg-boss's schedule could not be updated (${errorMessage(err)}). \`tally worker\` upgrades pg-boss; ` +
      'or change it in SQL with tally.set_job_schedule (applied at the next worker start)',
    { cause: err },
  );
}

/** Writes the change and reads the job before and after, in one transaction; with `boss`, rewrites pg-boss's schedule in it too. */
async function transact(client: pg.Client, job: ScheduledJob, action: ScheduleAction, value: string | undefined, boss?: PgBoss) {
  return withTransaction(client, async () => {
    // two changes (or a change and a worker applying the overrides at start) take turns: a
    // row lock would not do, the row may not exist yet
    await client.query(JOB_SCHEDULE_LOCK_SQL);
    const [before] = (await readSchedules(client, [job])).schedules as [JobSchedule];
    await write(client, job, before, action, value);
    const [after] = (await readSchedules(client, [job])).schedules as [JobSchedule];
    // pg-boss throttles the interval job in whole-second slots
    if (after.kind === 'interval' && !Number.isInteger(after.intervalSeconds)) {
      throw new UsageError(`${job.name}: the interval must be a whole number of seconds (got ${JSON.stringify(after.schedule)})`);
    }
    if (boss) {
      try {
        await applyCronSchedule(boss, after, { executeSql: (text, values) => client.query(text, values) });
      } catch (err) {
        throw bossUnavailable(err);
      }
    }
    return { before, after };
  });
}

/**
 * `set`, `disable`, `enable` or `reset` of one job. Bad input is a UsageError and writes
 * nothing. For a cron job whose pg-boss queue exists, pg-boss's schedule row is rewritten in
 * the same transaction as the override: both change, or neither.
 */
export async function changeSchedule(connectionString: string, action: ScheduleAction, jobName: string, value?: string): Promise<ScheduleChange> {
  const job = findJob(jobName);
  const checked = action === 'set' ? checkedValue(job, value ?? '') : undefined;
  const client = await connect(connectionString);
  try {
    let reaches: ScheduleChange['reaches'] = job.everySetting ? 'next-tick' : 'worker-start';
    let states: Awaited<ReturnType<typeof transact>>;
    if (job.everySetting || !(await bossInstalled(client))) {
      states = await transact(client, job, action, checked);
    } else {
      // errors of our own transaction pass as they are; pg-boss's own become pg_boss_unavailable
      const ours = new WeakSet<object>();
      const mark = (err: unknown) => {
        if (typeof err === 'object' && err !== null) ours.add(err);
        return err;
      };
      try {
        states = await withObserver(connectionString, async (boss) => {
          // the worker creates a job's queue; without one there is no schedule to rewrite yet
          const queue = await boss.getQueue(job.name);
          if (queue) reaches = 'pg-boss';
          return transact(client, job, action, checked, queue ? boss : undefined).catch((err: unknown) => {
            throw mark(err);
          });
        });
      } catch (err) {
        if (err instanceof TallyError || (typeof err === 'object' && err !== null && ours.has(err))) throw err;
        throw bossUnavailable(err);
      }
    }
    const { before, after } = states;
    return {
      job: job.name,
      action,
      before: state(before),
      after: state(after),
      changed: JSON.stringify(state(before)) !== JSON.stringify(state(after)),
      nextRunAt: after.kind === 'cron' && after.enabled ? nextCronRun(after.schedule) : null,
      reaches,
    };
  } finally {
    await client.end().catch(() => undefined);
  }
}

function describe(s: ScheduleState): string {
  return s.enabled ? `${display(s)} (${s.source})` : `disabled (would run ${display(s)})`;
}

export function formatScheduleChange(c: ScheduleChange): string {
  const lines = [
    c.changed ? `${c.job}: ${describe(c.before)} → ${describe(c.after)}` : `${c.job}: unchanged, ${describe(c.after)}`,
  ];
  if (c.action === 'set' && !c.after.enabled) lines.push(`${c.job} stays disabled: \`tally schedule enable ${c.job}\` runs it on this schedule.`);
  if (c.nextRunAt) lines.push(`next run: ${utc(c.nextRunAt)} (UTC)`);
  if (c.reaches === 'pg-boss') {
    lines.push(
      c.after.enabled
        ? 'pg-boss schedule updated: running workers use it from their next cron pass (within a minute).'
        : 'pg-boss schedule removed: running workers stop sending it within a minute (a run already queued still runs).',
    );
  } else if (c.reaches === 'next-tick') {
    lines.push(`Running workers pick it up at their next tick (within ${c.before.schedule}); workers started later, at start.`);
  } else {
    lines.push('Saved: no worker has set up this job here yet (no pgboss schema or queue); the worker applies it when it starts.');
  }
  return lines.join('\n');
}

export function registerSchedule(program: Command): void {
  const schedule = program
    .command('schedule')
    .description("list the scheduled jobs, or override one's schedule (set, disable, enable, reset); kept in tally.job_schedules")
    .addHelpText('after', SCHEDULE_HELP);
  schedule
    .command('list', { isDefault: true })
    .description('every job: its schedule (UTC), source (default, override, disabled), default, next run, last run')
    .option('--json', 'print JSON instead of a table')
    .allowExcessArguments() // as the default command, `tally schedule bogus` lands here: refused below
    .action(async (raw, command: Command) => {
      const options = parseOptions(jsonOnly, raw);
      const [unknown] = command.args;
      if (unknown !== undefined) throw new UsageError(`unknown schedule command ${JSON.stringify(unknown)}; the commands are list, set, disable, enable, reset`);
      await withDatabase({}, async (db) => {
        const list = await listSchedules(db.connectionString);
        process.stdout.write(options.json ? JSON.stringify(list, null, 2) + '\n' : formatScheduleList(list) + '\n');
      });
    });
  const change = (action: ScheduleAction, description: string, help: string, withValue = false) => {
    const command = schedule.command(action).description(description).argument('<job>', 'the job, e.g. tally-heartbeat (`tally schedule list` lists them)');
    if (withValue) command.argument('<schedule>', "a quoted five-field cron, UTC ('*/5 * * * *'); for tally-rollups an interval (5s, '30 seconds')");
    command
      .option('--json', 'print the change as JSON')
      .addHelpText('after', help)
      // extra arguments are refused below, in one line that says why they happen
      .allowExcessArguments(withValue)
      .action(async (job: string, ...rest: unknown[]) => {
        const value = withValue ? (rest[0] as string) : undefined;
        const options = parseOptions(jsonOnly, rest[withValue ? 1 : 0]);
        const given = (rest.at(-1) as Command).args.length;
        if (given > 2) {
          throw new UsageError(`expected JOB and one SCHEDULE, got ${given} arguments: quote the cron ('*/5 * * * *'); unquoted, the shell splits it and expands its stars`);
        }
        await withDatabase({}, async (db) => {
          const result = await changeSchedule(db.connectionString, action, job, value);
          process.stdout.write(options.json ? JSON.stringify(result, null, 2) + '\n' : formatScheduleChange(result) + '\n');
        });
      });
  };
  change(
    'set',
    "override a job's schedule: a cron for the cron jobs, an interval for tally-rollups",
    "\nExamples:\n  tally schedule set tally-heartbeat '*/5 * * * *'     every 5 minutes (UTC)\n" +
      "  tally schedule set tally-retention '30 2 * * *'      02:30 UTC daily\n" +
      '  tally schedule set tally-rollups 2s                  writes the setting rollups.interval (1 s to 1 h)\n' +
      'Quote a cron: unquoted, the shell expands its stars. A disabled job stays disabled.\n' +
      'Running workers follow within a minute (cron) or at their next tick (interval).',
    true,
  );
  change(
    'disable',
    'stop scheduling a job (its override, if any, is kept for enable)',
    '\nThe job is no longer scheduled (running workers stop within a minute; the interval job at its next tick),\n' +
      'but its queue is still worked, so it can still be run by hand (`tally run JOB`). `tally schedule enable JOB` undoes it.',
  );
  change('enable', 'schedule a disabled job again, on its override if it has one, else its default', '\nUndoes `tally schedule disable JOB`.');
  change(
    'reset',
    'back to the default schedule, enabled (for tally-rollups also the default rollups.interval)',
    '\nDeletes the override from tally.job_schedules (and, for tally-rollups, restores the setting rollups.interval).',
  );
}
