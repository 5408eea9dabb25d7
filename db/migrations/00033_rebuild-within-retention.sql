-- No correction rebuilds a bucket that may have lost raw events to retention.
--
-- void_events, reprice and recompute_rollups all rebuild whole buckets from their raw
-- events through tally._rebuild_rollups. Retention drops whole UTC-month partitions, and a
-- daily or monthly bucket of an account outside UTC can span two of them: once the older
-- one is gone, rebuilding the bucket keeps only the surviving events and loses the rest for
-- good (monthly rows are kept forever). recompute_rollups already refused ranges near the
-- cutoff; void_events and reprice did not. The check now lives in the one place they share:
-- _rebuild_rollups refuses (past_retention) a bucket that starts before the retention
-- cutoff of raw events and that the fold would recreate (hourly and daily buckets past
-- their own retention are not). The caller's transaction is rolled back whole.

CREATE OR REPLACE FUNCTION tally._rebuild_rollups(p_grains text[], p_accounts uuid[], p_buckets text[]) RETURNS jsonb
  LANGUAGE plpgsql
  SET search_path = pg_catalog, pg_temp
  SET DateStyle = 'ISO'
  SET TimeZone = 'UTC'
  AS $_$
DECLARE
  v_watermark bigint := (SELECT s.watermark FROM tally.rollup_state s);
  v_grain     text;
  v_counts    jsonb := '{}';
  v_accounts  uuid[];
  v_from      timestamptz[];
  v_to        timestamptz[];
  v_keys      text[];
  v_refused   text;
BEGIN
  FOREACH v_grain IN ARRAY ARRAY['hourly', 'daily', 'monthly'] LOOP
    -- the UTC time range that holds each bucket's events: an hour, or a local day or month
    -- of the account, widened by a day (the fold then keeps exactly the bucket's events)
    SELECT array_agg(r.account_id), array_agg(r.range_from), array_agg(r.range_to), array_agg(r.bucket)
    INTO v_accounts, v_from, v_to, v_keys
    FROM (
      SELECT DISTINCT k.account_id, k.bucket,
             CASE v_grain WHEN 'hourly' THEN k.bucket::timestamptz
                          ELSE ((k.bucket::date)::timestamp AT TIME ZONE a.timezone) - interval '1 day' END AS range_from,
             CASE v_grain WHEN 'hourly' THEN k.bucket::timestamptz + interval '1 hour'
                          WHEN 'daily' THEN ((k.bucket::date + 1)::timestamp AT TIME ZONE a.timezone) + interval '1 day'
                          ELSE ((k.bucket::date + interval '1 month') AT TIME ZONE a.timezone) + interval '1 day' END AS range_to
      FROM unnest(p_grains, p_accounts, p_buckets) AS k(grain, account_id, bucket)
      JOIN tally.accounts a ON a.id = k.account_id
      WHERE k.grain = v_grain
    ) r;
    v_counts := v_counts || jsonb_build_object(v_grain, coalesce(cardinality(v_accounts), 0));
    CONTINUE WHEN v_accounts IS NULL;

    -- A bucket is rebuilt whole from its raw events, so none may start before the raw
    -- events' retention cutoff: retention drops whole UTC months, and a local day or month
    -- of an account outside UTC can span two; rebuilt from the surviving partition, it would
    -- lose the rest for good. Buckets past their own grain's retention are not recreated by
    -- the fold, so only those that would be are checked. (range_from is widened by a day.)
    SELECT format('%s bucket %s of account %s', v_grain, t.bucket, t.account_id) INTO v_refused
    FROM unnest(v_accounts, v_from, v_keys) AS t(account_id, range_from, bucket)
    WHERE CASE v_grain WHEN 'hourly' THEN t.range_from ELSE t.range_from + interval '1 day' END
          < tally._retention_floor('events')
      AND CASE v_grain WHEN 'hourly' THEN t.range_from ELSE t.range_from + interval '1 day' END
          >= tally._retention_floor(v_grain)
    LIMIT 1;
    IF v_refused IS NOT NULL THEN
      PERFORM tally._raise('past_retention',
        format('the %s starts before %s, where raw events past retention (setting retention.events) may be gone: it cannot be rebuilt from them',
               v_refused, tally._retention_floor('events')));
    END IF;

    EXECUTE format(
      'DELETE FROM tally.%I u USING unnest($2, $3, $4) AS k(grain, account_id, bucket)
        WHERE k.grain = $1 AND u.account_id = k.account_id AND u.bucket = k.bucket::%s',
      'usage_' || v_grain, CASE v_grain WHEN 'hourly' THEN 'timestamptz' ELSE 'date' END)
    USING v_grain, p_grains, p_accounts, p_buckets;
    PERFORM tally._fold_rollups('ranges', 0, v_watermark, ARRAY[v_grain], v_accounts, v_from, v_to, v_keys);
  END LOOP;
  RETURN v_counts;
END
$_$;

COMMENT ON FUNCTION tally._rebuild_rollups(text[], uuid[], text[]) IS
  'Deletes the aggregate rows of the given buckets (parallel arrays grain, account_id, bucket text) and folds their events again (id <= watermark, not voided). Refuses (past_retention) a bucket starting before the raw events'' retention cutoff that the fold would recreate, since some of its events may be gone. Returns {hourly, daily, monthly} bucket counts. Callers hold the rollups'' lock.';
COMMENT ON FUNCTION tally.void_events(bigint[], text) IS
  'Takes events out of every aggregate, for a reason (1 to 1000 characters): records who, when and why in tally.event_voids (the events stay in tally.events) and rebuilds exactly the hourly, daily and monthly buckets they had been counted in. Voiding twice keeps the first record. Returns {voided, already_void, rebuilt_buckets}. Errors: invalid_parameter (22023), event_not_found (P0002), past_retention (22023, nothing voided) when a bucket to rebuild starts before the raw events'' retention cutoff. Service callers only.';
