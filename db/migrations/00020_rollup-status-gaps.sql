-- tally.rollup_status() also says what is missing and what went wrong:
--   * unaggregated_hours / oldest_unaggregated_hour: the UTC hours in which some account has
--     events past the watermark but no hourly aggregate row yet, i.e. what a dashboard that
--     reads the stored tables (not the *_live views) does not show. Computed from the
--     unfolded tail only, so its cost is the tail's, never the history's; folded history is
--     checked by tally.verify_rollups.
--   * last_run_ok, last_error, last_error_at, failures: the outcome of the latest scheduled
--     run as recorded in tally.job_runs (by the worker, or by the pg_cron wrapper of the
--     README). A failed run rolls back, so only that record can tell.

CREATE OR REPLACE FUNCTION tally.rollup_status() RETURNS jsonb
  LANGUAGE sql STABLE
  SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  AS $$
    with state as (
      select * from tally.rollup_state
    ),
    tail as materialized (
      -- the events past the watermark: what the next runs will fold (cost: the tail only)
      select e.account_id, e.occurred_at, e.received_at
      from tally.events e, state s
      where e.id > s.watermark
    ),
    pending as (
      select count(*) as n, min(t.received_at) as oldest from tail t
    ),
    gaps as (
      -- the account-hours of the tail that have no hourly row yet (read by primary key)
      select count(distinct h.hour) as hours, min(h.hour) as oldest
      from (select distinct t.account_id, date_trunc('hour', t.occurred_at, 'UTC') as hour from tail t) h
      where not exists (select 1 from tally.usage_hourly u where u.account_id = h.account_id and u.bucket = h.hour)
    ),
    latest as (
      -- the latest scheduled run's outcome, if one was ever recorded
      select r.last_ok, r.last_error, r.last_finished_at, r.failures
      from tally.job_runs r where r.job = 'tally-rollups'
    )
    select jsonb_build_object(
      'watermark', s.watermark,
      'newest_event_id', coalesce(pg_catalog.pg_sequence_last_value(pg_catalog.pg_get_serial_sequence('tally.events', 'id')::regclass), 0),
      'pending_events', p.n,
      'oldest_pending_age_seconds', extract(epoch from now() - p.oldest),
      'unaggregated_hours', g.hours,
      'oldest_unaggregated_hour', g.oldest,
      'last_run_started_at', s.last_started_at,
      'last_run_finished_at', s.last_finished_at,
      'last_run_duration_ms', s.last_duration_ms,
      'last_run_events', s.last_events,
      'last_run_waited_for_pids', to_jsonb(s.last_waited_for),
      'runs', s.runs,
      'last_run_ok', l.last_ok,
      'last_error', case when not l.last_ok then l.last_error end,
      'last_error_at', case when not l.last_ok then l.last_finished_at end,
      'failures', coalesce(l.failures, 0))
    from state s cross join pending p cross join gaps g left join latest l on true
  $$;
COMMENT ON FUNCTION tally.rollup_status() IS
  'Where the rollups stand: watermark, newest event id, pending events (past the watermark) and the age of the oldest, the UTC hours with pending events of an account that has no hourly row for them yet (unaggregated_hours, oldest_unaggregated_hour; cost bounded by the pending tail), the last successful run (time, duration, events, transactions it waited for in vain), and the latest scheduled run''s outcome from tally.job_runs (last_run_ok, last_error and last_error_at when it failed, failures in total). Service callers only.';
