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
  LANGUAGE sql STABLE
  SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  AS $$
    with state as (
      select * from tally.rollup_state
    ),
    pending as (
      -- the events past the watermark: what the next runs will fold (cost: the tail only)
      select count(*) as n, min(e.received_at) as oldest
      from tally.events e, state s
      where e.id > s.watermark
    ),
    tail_tuples as (
      -- the (account, UTC hour, dimensions) tuples of the tail's events, voided ones left out
      select e.account_id, date_trunc('hour', e.occurred_at, 'UTC') as hour,
             e.api_key_id, e.event_type, e.provider, e.model, e.endpoint, e.file_type
      from tally.events e, state s
      where e.id > s.watermark
        and not exists (select 1 from tally.event_voids v where v.account_id = e.account_id and v.event_id = e.id)
      group by 1, 2, 3, 4, 5, 6, 7, 8
    ),
    gaps as (
      -- the hours in which some tuple has no hourly row yet (read by primary key)
      select count(distinct t.hour) as hours, min(t.hour) as oldest
      from tail_tuples t
      where not exists (
        select 1 from tally.usage_hourly u
        where u.account_id = t.account_id and u.bucket = t.hour
          and u.dim_key = tally._dim_key(t.api_key_id, t.event_type, t.provider, t.model, t.endpoint, t.file_type))
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
  'Where the rollups stand: watermark, newest event id, pending events (past the watermark) and the age of the oldest, the UTC hours in which an account has pending (not voided) events of a dimension tuple with no hourly row yet (unaggregated_hours, oldest_unaggregated_hour; cost: one scan of the pending tail and a primary-key probe per distinct tuple in it, so poll it sparingly during a large backlog), the last successful run (time, duration, events, transactions it waited for in vain), and the latest scheduled run''s outcome from tally.job_runs (last_run_ok, last_error and last_error_at when it failed, failures in total). Service callers only.';
