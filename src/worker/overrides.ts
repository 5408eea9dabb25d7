/**
 * Schedule overrides (tally.job_schedules, migration 18) applied to SCHEDULED_JOBS: the
 * schedule each job runs on, shared by the worker, `tally schedule` and `tally status`.
 *
 * Cron expressions are checked with cron-parser, the parser pg-boss evaluates them with
 * (same options: UTC, not strict), so what Tally accepts is exactly what the worker can run.
 * Tally asks for five fields (no seconds, no @aliases): pg-boss's cron pass runs about every
 * 30 s, and pg_cron takes the same five fields.
 */
import { CronExpressionParser } from 'cron-parser';
import type pg from 'pg';
import type { Db, PgBoss } from 'pg-boss';
import { z } from 'zod';
import { errorMessage } from '../errors.ts';
import { SCHEDULED_JOBS, type ScheduledJob } from './jobs.ts';

/** The schema version that brought tally.job_schedules. */
export const JOB_SCHEDULES_VERSION = 18;

const CRON_FIELDS = ['minute', 'hour', 'day-of-month', 'month', 'day-of-week'] as const;

function parseError(cron: string): string | undefined {
  try {
    CronExpressionParser.parse(cron, { tz: 'UTC', strict: false });
    return undefined;
  } catch (err) {
    return plainCronError(errorMessage(err));
  }
}

/** cron-parser's message in plain words (its own text is kept for any message not known here). */
function plainCronError(message: string): string {
  let m: RegExpExecArray | null;
  if ((m = /got value (\S+) expected range (\d+)-(\d+)/.exec(message))) return `must be ${m[2]} to ${m[3]} (got ${m[1]})`;
  if ((m = /got range (\S+) expected range (\d+)-(\d+)/.exec(message))) return `a range must stay within ${m[2]} to ${m[3]} (got ${m[1]})`;
  if (/cannot repeat at every 0 time/.test(message)) return 'a step (/N) must be at least 1';
  if ((m = /Invalid characters, got value: (.*)$/.exec(message))) return `must be a number, a range (1-5), a list (1,3) or a step (*/5) (got ${m[1]})`;
  if ((m = /Invalid range: (\S+), min\((\d+)\) > max\((\d+)\)/.exec(message))) return `a range must go upwards (got ${m[1]})`;
  if (/Invalid explicit day of month definition/.test(message)) return 'the day of month never occurs in the month given (e.g. 31 in February)';
  return message;
}

/** The longest cron tally.job_schedules stores (its CHECK). */
const CRON_MAX_LENGTH = 200;

/**
 * The transaction-level lock every schedule change takes (tally.set_job_schedule too): a
 * change and a worker applying the overrides at start take turns, so neither writes a stale
 * schedule into pg-boss. One lock for all jobs, so no order of changes can deadlock.
 */
export const JOB_SCHEDULE_LOCK_SQL = "select pg_advisory_xact_lock(hashtext('tally.job_schedules'))";

/** Why a cron expression cannot be a Tally schedule (naming the field at fault), or undefined when it can. */
export function cronProblem(cron: string): string | undefined {
  if (normalizeCron(cron).length > CRON_MAX_LENGTH) return `must be at most ${CRON_MAX_LENGTH} characters`;
  const fields = cron.trim().split(/\s+/).filter((f) => f !== '');
  if (fields.length !== CRON_FIELDS.length) {
    return `must be five fields (${CRON_FIELDS.join(' ')}), got ${fields.length}`;
  }
  const whole = parseError(fields.join(' '));
  if (whole === undefined) return undefined;
  // cron-parser does not say which field it refused: try each one alone among wildcards
  for (const [i, field] of fields.entries()) {
    const alone = parseError(CRON_FIELDS.map((_, j) => (j === i ? field : '*')).join(' '));
    if (alone !== undefined) return `${CRON_FIELDS[i]} field ${JSON.stringify(field)}: ${alone}`;
  }
  return whole; // fields valid alone but not together, e.g. 31 in February
}

/** The cron expression as stored: fields separated by one space. */
export const normalizeCron = (cron: string): string => cron.trim().split(/\s+/).join(' ');

/** The first run of a valid cron expression (UTC) after `from`. */
export function nextCronRun(cron: string, from = new Date()): Date {
  return CronExpressionParser.parse(cron, { tz: 'UTC', strict: false, currentDate: from }).next().toDate();
}

export type ScheduleSource = 'default' | 'override' | 'disabled';

/** The schedule a job runs on, once its override (if any) is applied. */
export interface JobSchedule {
  job: ScheduledJob;
  kind: 'cron' | 'interval';
  /** The cron expression (UTC), or the interval as set (e.g. `10 seconds`). */
  schedule: string;
  /** The built-in cron, or the interval setting's default. */
  default: string;
  /** `disabled` wins over `override`: a disabled job runs on nothing. */
  source: ScheduleSource;
  enabled: boolean;
  /** Interval jobs: the interval in seconds. */
  intervalSeconds: number | undefined;
  /** The cron override stored in tally.job_schedules (NULL: the default). */
  cronOverride: string | null;
  /** A stored cron override the worker cannot run (written by hand): it falls back to the default. */
  problem: string | undefined;
  updatedAt: Date | null;
  updatedBy: string | null;
}

/** A row of tally.job_schedules that names no job Tally knows (the worker ignores it). */
export interface UnknownOverride {
  job: string;
  cron: string | null;
  enabled: boolean;
}

const overrideRow = z.object({
  name: z.string().nullable(),
  row_job: z.string().nullable(),
  cron: z.string().nullable(),
  enabled: z.boolean().nullable(),
  updated_at: z.date().nullable(),
  updated_by: z.string().nullable(),
  interval: z.string().nullable(),
  default_interval: z.string().nullable(),
  interval_seconds: z.number().nullable(),
  interval_is_default: z.boolean().nullable(),
});

function effective(job: ScheduledJob, row: z.infer<typeof overrideRow> | undefined): JobSchedule {
  const enabled = row?.enabled ?? true;
  const common = { job, enabled, updatedAt: row?.updated_at ?? null, updatedBy: row?.updated_by ?? null };
  if (job.everySetting) {
    if (row?.interval == null || row.default_interval == null || row.interval_seconds == null || row.interval_seconds < 1) {
      throw new Error(`setting ${job.everySetting} is missing or below 1 second`);
    }
    return {
      ...common,
      kind: 'interval',
      schedule: row.interval,
      default: row.default_interval,
      source: !enabled ? 'disabled' : row.interval_is_default ? 'default' : 'override',
      intervalSeconds: row.interval_seconds,
      cronOverride: null,
      problem: row.cron === null ? undefined : `cron ${JSON.stringify(row.cron)} ignored: ${job.name} runs every ${job.everySetting}`,
    };
  }
  const builtIn = job.cron ?? '';
  const override = row?.cron ?? null;
  const problem = override === null ? undefined : cronProblem(override);
  return {
    ...common,
    kind: 'cron',
    schedule: override === null || problem ? builtIn : override,
    default: builtIn,
    source: !enabled ? 'disabled' : override === null ? 'default' : 'override',
    intervalSeconds: undefined,
    cronOverride: override,
    problem: problem && `stored cron ${JSON.stringify(override)} cannot run (${problem}); the default runs instead`,
  };
}

/**
 * The effective schedule of each job in `jobs` (one query), and with every job the rows of
 * tally.job_schedules that name none. Needs schema version 18.
 */
export async function readSchedules(
  q: Pick<pg.ClientBase, 'query'>,
  jobs: readonly ScheduledJob[] = SCHEDULED_JOBS,
): Promise<{ schedules: JobSchedule[]; unknown: UnknownOverride[] }> {
  const { rows } = await q.query(
    `select j.name, s.job as row_job, s.cron, s.enabled, s.updated_at, s.updated_by,
            st.value as interval, st.default_value as default_interval,
            extract(epoch from st.value::interval)::float8 as interval_seconds,
            st.value::interval = st.default_value::interval as interval_is_default
       from unnest($1::text[], $2::text[]) as j(name, setting)
       full join tally.job_schedules s on s.job = j.name
       left join tally.settings st on st.name = j.setting
      where j.name is not null or $3::boolean`,
    [jobs.map((j) => j.name), jobs.map((j) => j.everySetting ?? null), jobs === SCHEDULED_JOBS],
  );
  const parsed = rows.map((r) => overrideRow.parse(r));
  const byName = new Map(parsed.filter((r) => r.name !== null).map((r) => [r.name, r]));
  return {
    schedules: jobs.map((job) => effective(job, byName.get(job.name))),
    unknown: parsed
      .filter((r) => r.name === null && r.row_job !== null)
      .map((r) => ({ job: r.row_job ?? '', cron: r.cron, enabled: r.enabled ?? true })),
  };
}

/**
 * What a cron job's schedule asks that pg-boss (`scheduled`: its cron there, if any) does not
 * have yet: a cron, or `disabled`. Happens when tally.job_schedules was changed in SQL rather
 * than with `tally schedule`; the next worker start applies it.
 */
export function pendingChange(s: JobSchedule, scheduled: string | undefined): string | undefined {
  if (s.kind !== 'cron') return undefined;
  if (!s.enabled) return scheduled === undefined ? undefined : 'disabled';
  return scheduled === s.schedule ? undefined : s.schedule;
}

/**
 * Puts a cron job's effective schedule into pg-boss: scheduled when enabled, unscheduled when
 * disabled. `db`: run the statement on that connection (e.g. inside the caller's transaction).
 */
export async function applyCronSchedule(boss: PgBoss, s: JobSchedule, db?: Db): Promise<void> {
  if (s.kind !== 'cron') return;
  if (s.enabled) await boss.schedule(s.job.name, s.schedule, null, { tz: 'UTC', ...(db ? { db } : {}) });
  else await boss.unschedule(s.job.name, '', db ? { db } : {});
}
