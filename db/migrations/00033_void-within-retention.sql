-- void_events refuses events whose aggregates can no longer be rebuilt whole.
--
-- void_events rebuilds every bucket a voided event was counted in from its raw events. A
-- daily or monthly bucket of an account outside UTC spans two UTC-month partitions; once
-- retention has dropped the older one, rebuilding it would keep only the surviving events
-- and lose the rest for good (monthly rows are kept forever). Like recompute_rollups and
-- reprice, void_events now refuses (past_retention) an event that occurred less than 32
-- days after the retention cutoff of raw events. The rest of the function is unchanged.

CREATE OR REPLACE FUNCTION tally.void_events(p_event_ids bigint[], p_reason text) RETURNS jsonb
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  SET jit = off
  SET DateStyle = 'ISO'
  SET TimeZone = 'UTC'
  AS $$
DECLARE
  v_accounts  uuid[];
  v_ids       bigint[];
  v_times     timestamptz[];
  v_missing   bigint[];
  v_voided    bigint;
  v_grains    text[];
  v_kaccounts uuid[];
  v_kbuckets  text[];
  v_rebuilt   jsonb := '{}';
BEGIN
  IF p_event_ids IS NULL OR cardinality(p_event_ids) = 0 THEN
    PERFORM tally._raise('invalid_parameter', '22023', 'event_ids: give at least one event id');
  END IF;
  IF cardinality(p_event_ids) > 100000 THEN
    PERFORM tally._raise('invalid_parameter', '22023', 'event_ids: at most 100000 per call');
  END IF;
  IF p_reason IS NULL OR length(btrim(p_reason)) NOT BETWEEN 1 AND 1000 THEN
    PERFORM tally._raise('invalid_parameter', '22023', 'reason: must be 1 to 1000 characters');
  END IF;
  PERFORM tally._require_read_committed('void_events');
  -- Wait for a running rollup, and keep new ones out until this transaction ends: the
  -- watermark must not move while buckets are rebuilt.
  PERFORM pg_advisory_xact_lock(hashtext('tally.run_rollups'));

  SELECT array_agg(e.account_id), array_agg(e.id), array_agg(e.occurred_at)
  INTO v_accounts, v_ids, v_times
  FROM tally.events e WHERE e.id = ANY (p_event_ids);
  SELECT array_agg(i ORDER BY i) INTO v_missing
  FROM (SELECT DISTINCT i FROM unnest(p_event_ids) i WHERE i IS NULL OR NOT i = ANY (coalesce(v_ids, '{}')) LIMIT 10) m;
  IF v_missing IS NOT NULL THEN
    PERFORM tally._raise('event_not_found', 'P0002', format('event_ids: no events %s', v_missing));
  END IF;
  -- A bucket is rebuilt whole from its raw events: one that reaches into a partition
  -- retention has dropped would keep only part of its events. Monthly buckets (account
  -- time zone) reach back at most 32 days, as recompute_rollups and reprice check too.
  IF EXISTS (SELECT 1 FROM unnest(v_times) AS t(occurred_at) WHERE t.occurred_at < tally._retention_floor('events') + interval '32 days') THEN
    PERFORM tally._raise('past_retention', '22023',
      format('event_ids: an event occurred less than 32 days after %s, where raw events past retention (setting retention.events) may be gone; its aggregates cannot be rebuilt',
             tally._retention_floor('events')));
  END IF;

  -- new voids only: voiding twice keeps the first who/when/why
  WITH inserted AS (
    INSERT INTO tally.event_voids (account_id, event_id, occurred_at, voided_by, reason)
    SELECT t.account_id, t.event_id, t.occurred_at,
           tally._caller_role()::text || coalesce(' (user ' || (SELECT auth.uid())::text || ')', ''), btrim(p_reason)
    FROM unnest(v_accounts, v_ids, v_times) AS t(account_id, event_id, occurred_at)
    ON CONFLICT DO NOTHING
    RETURNING 1
  )
  SELECT count(*) INTO v_voided FROM inserted;

  -- the buckets the events had been counted in: only events the rollups already folded
  -- (later ones are simply skipped by the next run)
  SELECT array_agg(k.grain), array_agg(k.account_id), array_agg(k.bucket)
  INTO v_grains, v_kaccounts, v_kbuckets
  FROM (
    SELECT DISTINCT g.grain, t.account_id,
           CASE g.grain WHEN 'hourly' THEN date_trunc('hour', t.occurred_at, 'UTC')::text
                        WHEN 'daily' THEN (t.occurred_at AT TIME ZONE a.timezone)::date::text
                        ELSE date_trunc('month', t.occurred_at AT TIME ZONE a.timezone)::date::text END AS bucket
    FROM unnest(v_accounts, v_ids, v_times) AS t(account_id, event_id, occurred_at)
    JOIN tally.accounts a ON a.id = t.account_id
    CROSS JOIN (VALUES ('hourly'), ('daily'), ('monthly')) AS g(grain)
    WHERE t.event_id <= (SELECT s.watermark FROM tally.rollup_state s)
  ) k;
  IF v_grains IS NOT NULL THEN
    v_rebuilt := tally._rebuild_rollups(v_grains, v_kaccounts, v_kbuckets);
  END IF;
  RETURN jsonb_build_object('voided', v_voided, 'already_void', cardinality(v_ids) - v_voided, 'rebuilt_buckets', v_rebuilt);
END
$$;

COMMENT ON FUNCTION tally.void_events(bigint[], text) IS
  'Takes events out of every aggregate, for a reason (1 to 1000 characters): records who, when and why in tally.event_voids (the events stay in tally.events) and rebuilds exactly the hourly, daily and monthly buckets they had been counted in. Voiding twice keeps the first record. Returns {voided, already_void, rebuilt_buckets}. Errors: invalid_parameter (22023), event_not_found (P0002), past_retention (22023) for an event less than 32 days after the raw events'' retention cutoff, whose buckets cannot be rebuilt whole. Service callers only.';
