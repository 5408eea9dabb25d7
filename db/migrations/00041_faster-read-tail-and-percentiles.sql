-- Two fixed costs of every analytics read, cut without changing an answer.
--
-- 1. The unfolded tail's latency histogram. tally._usage_by summed the tail's events with 42
--    filtered counts per event (one per slot), about 1 µs an event: 1.3 ms of a 30-day
--    series for the largest account of the query bench (1,370 tail events). The tail is now
--    grouped by its keys and the event's slot first (one width_bucket per event), and the
--    42 counts run over those groups, a few dozen per bucket and value.
-- 2. tally._latency_percentiles, called once per row of every answer (168 times for a week
--    by hour): 51 µs a call, now about 25. Its sums are bigint instead of numeric, it walks
--    the array with FOREACH, and it stops at the slot that holds p99.
--
-- Measured and not kept: the same slot grouping in the fold's pass over the events. On the
-- rollup bench's synthetic backlog it was slower (7.2-7.8 s against 5.6-6.8 s for 1M
-- events): there the tuple-hours hold few events per slot, so the first grouping saved less
-- than it cost.

-- ---------------------------------------------------------------------------------------
-- The tail by slot
-- ---------------------------------------------------------------------------------------

DO $do$
DECLARE
  v_slots text; v_first text; v_first_columns text; v_second text;
BEGIN
  SELECT string_agg(format('width_bucket(%s, tally.latency_buckets())', m.event_value), ', ' ORDER BY m.ord),
         string_agg(format('%I', m.name || '_slot'), ', ' ORDER BY m.ord)
  INTO v_slots, v_first_columns
  FROM tally._rollup_metrics() m WHERE m.combine = 'histogram';
  SELECT string_agg(CASE m.combine
           WHEN 'histogram' THEN format('count(%s)', m.event_value)
           ELSE m.group_value END, ', ' ORDER BY m.ord),
         v_first_columns || ', ' || string_agg(format('%I', m.name || CASE WHEN m.combine = 'histogram' THEN '_n' ELSE '' END), ', ' ORDER BY m.ord),
         string_agg(CASE
           WHEN m.combine = 'sum' AND m.sql_type = 'bigint' THEN format('tally._sum8(t.%I)', m.name)
           WHEN m.combine = 'sum' THEN format('sum(t.%I)', m.name)
           WHEN m.combine = 'max' THEN format('max(t.%I)', m.name)
           ELSE (SELECT string_agg(format('tally._sum8(t.%I) FILTER (WHERE t.%I = %s)', m.name || '_n', m.name || '_slot', k), ', ' ORDER BY k)
                 FROM generate_series(0, 41) k) END, ', ' ORDER BY m.ord)
  INTO v_first, v_first_columns, v_second
  FROM tally._rollup_metrics() m;
  EXECUTE format($f$
    CREATE FUNCTION tally._usage_tail_sql_parts(OUT slots text, OUT first text, OUT first_columns text, OUT second text)
      LANGUAGE sql IMMUTABLE
      SET search_path = pg_catalog, pg_temp
      AS $b$ select %L::text, %L::text, %L::text, %L::text $b$$f$, v_slots, v_first, v_first_columns, v_second);
END
$do$;
COMMENT ON FUNCTION tally._usage_tail_sql_parts() IS
  'The constant SQL pieces of tally._usage_by''s tail, generated from tally._rollup_metrics() when migration 41 ran: slots (each histogram''s width_bucket slot of an event e, also what the first grouping groups by), first (each metric of a group of events of one slot: histograms as the count in it), first_columns (the names of slots and first) and second (the metrics of groups t of those rows, histograms as 42 slot columns, as tally._usage_sql_parts().tail gives them). A migration that changes the metric list recreates it.';
REVOKE ALL ON FUNCTION tally._usage_tail_sql_parts() FROM PUBLIC, anon, authenticated, service_role;

DO $do$
DECLARE
  v_def text := pg_get_functiondef('tally._usage_by(uuid, text, timestamptz[], timestamptz[], date, date, text[], uuid[], text[], text[], text[], text[], text[], date)'::regprocedure);
  v_decl_old constant text := $o$  v_parts     record := tally._usage_sql_parts();$o$;
  v_tail_old constant text := $o$        SELECT %1$s, %2$s, %3$s
        FROM %4$s
        WHERE e.account_id = $1 AND e.id > %5$s AND %6$s
          AND NOT EXISTS (SELECT 1 FROM tally.event_voids v WHERE v.account_id = e.account_id AND v.event_id = e.id)
        GROUP BY 1, 2, 3, 4$t$,
      v_tail_bucket, v_tail_grp, v_parts.tail, v_tail_from, v_watermark, v_tail_where);$o$;
BEGIN
  IF position(v_decl_old IN v_def) = 0 OR position(v_tail_old IN v_def) = 0 THEN
    RAISE EXCEPTION '_usage_by does not read its tail as expected';
  END IF;
  v_def := replace(v_def, v_decl_old, v_decl_old || $n$
  v_slots     record := tally._usage_tail_sql_parts();$n$);
  v_def := replace(v_def, v_tail_old, $n$        SELECT t.b1, t.b2, t.g1, t.g2, %7$s
        FROM (
          -- the events by bucket, value and latency slot: the 42 slot counts then run over
          -- these groups instead of over every event
          SELECT %1$s, %2$s, %8$s, %3$s
          FROM %4$s
          WHERE e.account_id = $1 AND e.id > %5$s AND %6$s
            AND NOT EXISTS (SELECT 1 FROM tally.event_voids v WHERE v.account_id = e.account_id AND v.event_id = e.id)
          GROUP BY 1, 2, 3, 4, %8$s
        ) t(b1, b2, g1, g2, %9$s)
        GROUP BY 1, 2, 3, 4$t$,
      v_tail_bucket, v_tail_grp, v_slots.first, v_tail_from, v_watermark, v_tail_where,
      v_slots.second, v_slots.slots, v_slots.first_columns);$n$);
  EXECUTE v_def;
END
$do$;

-- ---------------------------------------------------------------------------------------
-- Percentiles in one short walk
-- ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION tally._latency_percentiles(p_hist bigint[], p_latency_max integer,
    OUT p50 numeric, OUT p95 numeric, OUT p99 numeric)
  LANGUAGE plpgsql IMMUTABLE
  SET search_path = pg_catalog, pg_temp
  SET TimeZone = 'UTC'
  AS $$
DECLARE
  v_bounds constant integer[] := tally.latency_buckets();
  v_n      bigint := 0;
  v_c      bigint;
  v_ranks  bigint[];
  v_rank   bigint;     -- the rank looked for next
  v_out    numeric[] := ARRAY[NULL, NULL, NULL]::numeric[];
  v_seen   bigint := 0;
  v_j      integer := 1;
  v_k      integer := -1;
  v_lo     numeric;
  v_hi     numeric;
BEGIN
  -- a one-dimensional, 1-based array of 42 slots, as the rollups store it; else NULLs
  IF p_hist IS NULL OR cardinality(p_hist) <> 42 OR array_ndims(p_hist) <> 1 OR array_lower(p_hist, 1) <> 1 THEN
    RETURN;
  END IF;
  FOREACH v_c IN ARRAY p_hist LOOP
    v_n := v_n + v_c;
  END LOOP;
  IF v_n = 0 THEN
    RETURN;
  END IF;
  v_ranks := ARRAY[greatest(1, ceil(0.50 * v_n)), greatest(1, ceil(0.95 * v_n)), greatest(1, ceil(0.99 * v_n))];
  v_rank := v_ranks[1];
  FOREACH v_c IN ARRAY p_hist LOOP
    v_k := v_k + 1;   -- the slot, 0-based
    v_seen := v_seen + v_c;
    CONTINUE WHEN v_seen < v_rank;
    WHILE v_j <= 3 AND v_seen >= v_ranks[v_j] LOOP
      IF v_ranks[v_j] = v_n AND p_latency_max IS NOT NULL THEN
        v_out[v_j] := p_latency_max;  -- the largest latency is known exactly
      ELSE
        v_lo := CASE WHEN v_k = 0 THEN 0 ELSE v_bounds[v_k] END;
        v_hi := CASE WHEN v_k = 41 THEN NULL ELSE v_bounds[v_k + 1] - 1 END;
        IF p_latency_max IS NOT NULL THEN
          v_hi := greatest(v_lo, least(coalesce(v_hi, p_latency_max), p_latency_max));
        END IF;
        v_out[v_j] := CASE WHEN v_hi IS NULL THEN v_lo
                           WHEN v_lo + v_hi = 0 THEN 0
                           ELSE round((2 * v_lo * v_hi / (v_lo + v_hi))::double precision::numeric, 2) END;
      END IF;
      v_j := v_j + 1;
    END LOOP;
    EXIT WHEN v_j > 3;
    v_rank := v_ranks[v_j];
  END LOOP;
  p50 := v_out[1];
  p95 := v_out[2];
  p99 := v_out[3];
END
$$;
COMMENT ON FUNCTION tally._latency_percentiles(bigint[], integer) IS
  'p50, p95 and p99 (ms, 2 decimals) of a 42-slot latency histogram in one walk that stops at p99, each the estimate tally.histogram_percentile gives (latency_max bounds the top slot); NULL when empty, or when the array is not one-dimensional, 1-based and 42 long.';
