-- tally.rollup_status() also says what is missing and what went wrong:
--   * unaggregated_hours / oldest_unaggregated_hour: the UTC hours in which some account has
--     (not voided) events past the watermark of a dimension tuple with no hourly row yet,
--     i.e. what a dashboard that reads the stored tables (not the *_live views) does not
--     show at all. Computed from the unfolded tail only, so its cost is the tail's, never
--     the history's; folded history is checked by tally.verify_rollups.
--   * last_run_ok, last_error, last_error_at, failures: the outcome of the latest scheduled
--     run as recorded in tally.job_runs (by the worker, or by the pg_cron wrapper of the
--     README). A failed run rolls back, so only that record can tell.

CREATE OR REPLACE FUNCTION tally.rollup_status() RETURNS jsonb
  LANGUAGE plpgsql STABLE
  SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  AS $fn$
DECLARE
  v_state tally.rollup_state;
  v_tail  jsonb;
BEGIN
  SELECT * INTO v_state FROM tally.rollup_state;
  -- The watermark goes into the statement as a constant (as in tally.events_tail): with it
  -- as a parameter the planner cannot tell how few ids lie above it, and reads the whole
  -- history to find them.
  EXECUTE format($q$
    with tail as (
      -- the events past the watermark in one scan, by (account, UTC hour, dimensions) and
      -- voided or not: what the next runs will fold
      select e.account_id, date_trunc('hour', e.occurred_at, 'UTC') as hour,
             e.api_key_id, e.event_type, e.provider, e.model, e.endpoint, e.file_type,
             v.event_id is not null as voided, count(*) as n, min(e.received_at) as oldest
      from tally.events e
      left join tally.event_voids v on v.account_id = e.account_id and v.event_id = e.id
      where e.id > %s
      group by 1, 2, 3, 4, 5, 6, 7, 8, 9
    ),
    pending as (
      select coalesce(sum(t.n), 0)::bigint as n, min(t.oldest) as oldest from tail t
    ),
    gaps as (
      -- the hours in which some tuple has no hourly row yet (read by primary key)
      select count(distinct t.hour) as hours, min(t.hour) as oldest
      from tail t
      where not t.voided
        and not exists (
          select 1 from tally.usage_hourly u
          where u.account_id = t.account_id and u.bucket = t.hour
            and u.dim_key = tally._dim_key(t.api_key_id, t.event_type, t.provider, t.model, t.endpoint, t.file_type))
    )
    select jsonb_build_object(
      'pending_events', p.n,
      'oldest_pending_age_seconds', extract(epoch from now() - p.oldest),
      'unaggregated_hours', g.hours,
      'oldest_unaggregated_hour', g.oldest)
    from pending p cross join gaps g$q$, v_state.watermark)
  INTO v_tail;

  RETURN (
    SELECT jsonb_build_object(
      'watermark', v_state.watermark,
      'newest_event_id', coalesce(pg_sequence_last_value(pg_get_serial_sequence('tally.events', 'id')::regclass), 0),
      'last_run_started_at', v_state.last_started_at,
      'last_run_finished_at', v_state.last_finished_at,
      'last_run_duration_ms', v_state.last_duration_ms,
      'last_run_events', v_state.last_events,
      'last_run_waited_for_pids', to_jsonb(v_state.last_waited_for),
      'runs', v_state.runs,
      -- the latest scheduled run's outcome, if one was ever recorded
      'last_run_ok', r.last_ok,
      'last_error', CASE WHEN NOT r.last_ok THEN r.last_error END,
      'last_error_at', CASE WHEN NOT r.last_ok THEN r.last_finished_at END,
      'failures', coalesce(r.failures, 0)) || v_tail
    FROM (SELECT 1) AS one
    LEFT JOIN tally.job_runs r ON r.job = 'tally-rollups');
END
$fn$;
COMMENT ON FUNCTION tally.rollup_status() IS
  'Where the rollups stand: watermark, newest event id, pending events (past the watermark) and the age of the oldest, the UTC hours in which an account has pending (not voided) events of a dimension tuple with no hourly row yet (unaggregated_hours, oldest_unaggregated_hour; cost: one scan of the pending tail, found through the id index whatever the history behind it, and a primary-key probe per distinct tuple in it, so poll it sparingly during a large backlog), the last successful run (time, duration, events, transactions it waited for in vain), and the latest scheduled run''s outcome from tally.job_runs (last_run_ok, last_error and last_error_at when it failed, failures in total). Service callers only.';
