-- The dashboard functions answer the same whatever the caller's TimeZone setting.
--
-- Their calendars are the account's (every local day, week and month is computed with an
-- explicit AT TIME ZONE), but two steps used the session's TimeZone:
--
-- * compare_periods: the previous period's end, v_prev_from + (p_at - v_cur_from), adds an
--   interval with days (a timestamptz difference is justified into 24-hour days) to a
--   timestamptz, which PostgreSQL does in the session's zone: across a DST change of that
--   zone a day is 23 or 25 hours. With TimeZone = America/New_York, p_at = 2026-04-15 12:00Z
--   and a UTC account, the previous month ended at 2026-03-15 11:00Z instead of 12:00Z (the
--   same elapsed time), and an event at 11:30Z was left out.
-- * the retention guards (tally._check_day_range, get_usage_series, get_top_endpoints):
--   tally._retention_floor('daily')::date is the floor's date in the session's zone, while
--   apply_retention (TimeZone UTC) deletes the daily rows before its UTC date. In a session
--   west of UTC a range starting on the day before was accepted and read a day whose rows
--   were already deleted (zeros instead of past_retention); east of UTC the first day still
--   kept was refused.
--
-- Pinning TimeZone = 'UTC' for the duration of each call fixes both and changes nothing
-- else: results are instants and dates, not text, and the functions they call
-- (tally._usage_by, tally._usage_between, tally._check_day_range) run inside the setting.
-- Messages that print an instant now print it in UTC.

DO $$
DECLARE
  v_f regprocedure;
BEGIN
  FOR v_f IN
    SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
    WHERE p.pronamespace = 'tally'::regnamespace
      AND p.proname IN ('get_usage_series', 'get_breakdown', 'get_top_endpoints', 'compare_periods',
                        'get_period_summary', 'get_usage_history', 'get_dashboard_stats')
  LOOP
    EXECUTE format('ALTER FUNCTION %s SET TimeZone = %L', v_f, 'UTC');
  END LOOP;
END
$$;
