/**
 * The jobs the worker schedules. Each job is one call of a public SQL function, so a DBA
 * can run the same schedule with pg_cron instead: `select <sql>` on the same cron, then
 * `select tally.record_job_run(...)`. Later features add their jobs here.
 */
export interface ScheduledJob {
  /** pg-boss queue name and tally.job_runs key. */
  name: string;
  /** Five-field cron expression (UTC); cron cannot go below one minute. */
  cron?: string;
  /**
   * Instead of cron: the tally.settings interval (e.g. 'rollups.interval') at which every
   * worker offers the job; pg-boss keeps one job per interval slot across all workers.
   */
  everySetting?: string;
  /** Run the statement again while its result says `more: true` (a backlog in chunks). */
  repeatWhileMore?: boolean;
  /** The statement the job runs; it returns one row with one jsonb column `result`. */
  sql: string;
  /** Longest a run may take before pg-boss considers it expired. */
  expireInSeconds: number;
  description: string;
}

export const SCHEDULED_JOBS: readonly ScheduledJob[] = [
  {
    name: 'tally-heartbeat',
    cron: '* * * * *',
    sql: 'select tally.heartbeat() as result',
    expireInSeconds: 60,
    description: 'proves the scheduler, the worker and the database are alive (tally status shows its last run)',
  },
  {
    name: 'tally-ensure-partitions',
    cron: '17 3 * * *',
    sql: 'select tally.ensure_partitions() as result',
    expireInSeconds: 600,
    description: 'creates the coming months\' events partitions and moves rows out of the default partition',
  },
  {
    name: 'tally-purge-idempotency-keys',
    cron: '37 3 * * *',
    sql: 'select tally.purge_idempotency_keys() as result',
    expireInSeconds: 1800,
    description: 'forgets idempotency keys older than the setting ingest.idempotency_retention (default 7 days)',
  },
  {
    name: 'tally-retention',
    cron: '57 3 * * *',
    sql: 'select tally.apply_retention() as result',
    expireInSeconds: 3600,
    description: 'drops events partitions past retention.events and deletes aggregates and dead letters past theirs',
  },
  {
    name: 'tally-verify-rollups',
    cron: '47 3 * * *',
    sql: 'select tally.verify_previous_day() as result',
    expireInSeconds: 3600,
    description: 'compares yesterday\'s rollups with the raw events; a mismatch fails the run (tally status shows it)',
  },
  {
    name: 'tally-rollups',
    everySetting: 'rollups.interval',
    repeatWhileMore: true,
    sql: 'select tally.run_rollups() as result',
    expireInSeconds: 900,
    description: 'folds new events into usage_hourly, usage_daily and usage_monthly (every rollups.interval, default 5 s)',
  },
];
