-- Two fixes of the dashboard functions (migration 36), found by their tests:
-- 1. they answer the same whatever the caller's TimeZone setting;
-- 2. a local day, week or month starts at its first instant, also where midnight happens
--    twice (below).
--
-- ---------------------------------------------------------------------------------------
-- 1. The session's TimeZone
-- ---------------------------------------------------------------------------------------
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

-- ---------------------------------------------------------------------------------------
-- 2. A local day, week or month starts at its first instant, also when midnight happens twice
-- ---------------------------------------------------------------------------------------
--
-- Where clocks fall back from 01:00 to 00:00 (Atlantic/Azores on the last Sunday of
-- October, America/Havana on the first Sunday of November), 00:00 is on the clock twice, and
-- `timestamp AT TIME ZONE zone` takes the second (standard-time) reading. The rollups put
-- the events of the first hour in that day (their local date is that day), but the
-- functions said the day started an hour later: get_usage_series gave the day before a
-- 25-hour bucket ending at the second midnight and the day a bucket_start after some of its
-- events; compare_periods at 00:45 (first pass) answered current_from after current_to (an
-- empty current period) and, for a previous period starting that day, left its first hour
-- out; get_period_summary gave such a month a period_start an hour late.
--
-- tally._local_start reads a local midnight with the offset in force an hour before it:
-- that is the first pass. Elsewhere it gives what AT TIME ZONE gives (in a gap at midnight,
-- spring forward, both give the first instant after the gap).

CREATE FUNCTION tally._local_start(p_local timestamp, p_timezone text) RETURNS timestamptz
  LANGUAGE sql IMMUTABLE
  SET search_path = pg_catalog, pg_temp
  AS $$ select least(p_local AT TIME ZONE p_timezone, ((p_local - interval '1 hour') AT TIME ZONE p_timezone) + interval '1 hour') $$;
COMMENT ON FUNCTION tally._local_start(timestamp, text) IS
  'The first instant at which the clock of p_timezone reads p_local (a local midnight that happens twice, clocks falling back from 01:00 to 00:00: its first pass; AT TIME ZONE alone gives the second).';
REVOKE ALL ON FUNCTION tally._local_start(timestamp, text) FROM PUBLIC, anon, authenticated, service_role;

DO $$
DECLARE
  v_fix record;
  v_def text;
  v_old text;
  v_k   integer;
BEGIN
  FOR v_fix IN
    SELECT f.fn, f.olds, f.news FROM (VALUES
      ('tally.get_usage_series(uuid, timestamptz, timestamptz, text, uuid[], text[], text[], text[], text[], text[])',
       ARRAY['SELECT (g.d::timestamp AT TIME ZONE %1$L), ((g.d + $3)::timestamp AT TIME ZONE %1$L), g.d, %2$s'],
       ARRAY['SELECT tally._local_start(g.d::timestamp, %1$L), tally._local_start((g.d + $3)::timestamp, %1$L), g.d, %2$s']),
      ('tally._usage_between(uuid, timestamptz[], timestamptz[], uuid[], text[], text[], text[], text[], text[])',
       ARRAY['IF (v_d1::timestamp AT TIME ZONE v_tz) < v_lo THEN',
             'IF ((v_d2 + 2)::timestamp AT TIME ZONE v_tz) <= v_hi THEN',
             '(v_lo, CASE WHEN v_d1 <= v_d2 THEN (v_d1::timestamp AT TIME ZONE v_tz) ELSE v_hi END),',
             '(CASE WHEN v_d1 <= v_d2 THEN ((v_d2 + 1)::timestamp AT TIME ZONE v_tz) ELSE v_hi END, v_hi)) AS x(a, b)'],
       ARRAY['IF tally._local_start(v_d1::timestamp, v_tz) < v_lo THEN',
             'IF tally._local_start((v_d2 + 2)::timestamp, v_tz) <= v_hi THEN',
             '(v_lo, CASE WHEN v_d1 <= v_d2 THEN tally._local_start(v_d1::timestamp, v_tz) ELSE v_hi END),',
             '(CASE WHEN v_d1 <= v_d2 THEN tally._local_start((v_d2 + 1)::timestamp, v_tz) ELSE v_hi END, v_hi)) AS x(a, b)']),
      ('tally.compare_periods(uuid, text, timestamptz, uuid[], text[], text[], text[], text[], text[])',
       ARRAY['v_cur_from := date_trunc(p_period, v_local) AT TIME ZONE v_tz;',
             'v_prev_from := (date_trunc(p_period, v_local) - v_step) AT TIME ZONE v_tz;'],
       ARRAY['v_cur_from := tally._local_start(date_trunc(p_period, v_local), v_tz);',
             'v_prev_from := tally._local_start(date_trunc(p_period, v_local) - v_step, v_tz);']),
      ('tally.get_period_summary(uuid, date)',
       ARRAY['v_start := v_month::timestamp AT TIME ZONE v_tz;',
             'v_end := (v_month + interval ''1 month'') AT TIME ZONE v_tz;'],
       ARRAY['v_start := tally._local_start(v_month::timestamp, v_tz);',
             'v_end := tally._local_start(v_month + interval ''1 month'', v_tz);'])
    ) AS f(fn, olds, news)
  LOOP
    v_def := pg_get_functiondef(v_fix.fn::regprocedure);
    FOR v_k IN 1..cardinality(v_fix.olds) LOOP
      v_old := v_fix.olds[v_k];
      IF (length(v_def) - length(replace(v_def, v_old, ''))) / length(v_old) <> 1 THEN
        RAISE EXCEPTION '% does not read as expected: %', v_fix.fn, v_old;
      END IF;
      v_def := replace(v_def, v_old, v_fix.news[v_k]);
    END LOOP;
    EXECUTE v_def;
  END LOOP;
END
$$;
