-- One definition of a percentile read from a latency histogram, with a proved bound.
--
-- What is estimated: the nearest-rank percentile. For a fraction p of n latencies it is the
-- smallest latency v such that at least r = max(1, ceil(p * n)) of them are <= v (what
-- percentile_disc(p) returns). It is always one of the latencies. (percentile_cont
-- interpolates between two neighbouring latencies instead; with few events and a wide gap
-- between them it can lie far from both, and no histogram estimate can bound the distance.)
--
-- How: the histogram's cumulative counts find the slot holding the r-th latency, so v is
-- known to lie in that slot's integer range [lo, hi]: slot 0 is [0, 0], slot k (1..40) is
-- [bounds[k], bounds[k+1] - 1], slot 41 is [bounds[41], latency_max] (latencies are whole
-- milliseconds). The estimate is e = 2 lo hi / (lo + hi), the point whose largest relative
-- error over [lo, hi] is smallest: |e - v| / v <= (hi - lo) / (hi + lo) for every v in it.
-- Over the bounds of tally.latency_buckets() that is at most 3 - 2 sqrt(2) = 0.1716 (the
-- ratio of adjacent bounds approaches sqrt(2)), so the estimate is within 17.2 % of the
-- nearest-rank percentile, and exact when its slot holds one value (0, 1, 2 and 3 ms). With
-- latency_max given, hi is at most latency_max (the error can only shrink) and the largest
-- latency (rank n) is exact; slot 41 (about 25 min and more) has no upper bound without
-- it, and then the estimate is its lower bound.

CREATE FUNCTION tally.histogram_percentile(p_hist bigint[], p_fraction numeric, p_latency_max integer DEFAULT NULL)
  RETURNS double precision
  LANGUAGE plpgsql IMMUTABLE
  SET search_path = pg_catalog, pg_temp
  AS $$
DECLARE
  v_bounds integer[] := tally.latency_buckets();
  v_n      numeric := 0;
  v_rank   numeric;
  v_seen   numeric := 0;
  v_k      integer;
  v_lo     numeric;
  v_hi     numeric;
BEGIN
  IF p_fraction IS NULL OR p_fraction < 0 OR p_fraction > 1 THEN
    -- raised here rather than through tally._raise, which members may not execute
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('fraction: must be from 0 to 1 (got %s)', p_fraction), HINT = 'invalid_parameter';
  END IF;
  IF p_hist IS NULL THEN
    RETURN NULL;
  END IF;
  IF cardinality(p_hist) <> 42 OR array_lower(p_hist, 1) <> 1 OR array_position(p_hist, NULL) IS NOT NULL
     OR EXISTS (SELECT 1 FROM unnest(p_hist) c WHERE c < 0) THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'hist: must be a 42-slot latency histogram of counts >= 0 (latency_hist of the rollups)', HINT = 'invalid_parameter';
  END IF;
  SELECT sum(c) INTO v_n FROM unnest(p_hist) c;
  IF v_n = 0 THEN
    RETURN NULL;
  END IF;
  v_rank := greatest(1, ceil(p_fraction * v_n));
  IF v_rank = v_n AND p_latency_max IS NOT NULL THEN
    RETURN p_latency_max;  -- the largest latency is known exactly
  END IF;
  FOR k IN 0..41 LOOP
    v_seen := v_seen + p_hist[k + 1];
    IF v_seen >= v_rank THEN
      v_k := k;
      EXIT;
    END IF;
  END LOOP;
  v_lo := CASE WHEN v_k = 0 THEN 0 ELSE v_bounds[v_k] END;
  v_hi := CASE WHEN v_k = 41 THEN NULL ELSE v_bounds[v_k + 1] - 1 END;
  IF p_latency_max IS NOT NULL THEN
    v_hi := greatest(v_lo, least(coalesce(v_hi, p_latency_max), p_latency_max));
  END IF;
  IF v_hi IS NULL THEN
    RETURN v_lo;  -- the open top slot: at least this
  END IF;
  IF v_lo + v_hi = 0 THEN
    RETURN 0;
  END IF;
  RETURN (2 * v_lo * v_hi / (v_lo + v_hi))::double precision;
END
$$;
COMMENT ON FUNCTION tally.histogram_percentile(bigint[], numeric, integer) IS
  'Estimates the nearest-rank percentile (the smallest latency v with at least max(1, ceil(p_fraction * n)) of the n latencies <= v, as percentile_disc) from a latency_hist of the rollups (sum rows first with tally._hist_sum), in ms: 2 lo hi / (lo + hi) over the integer range [lo, hi] of the slot holding that rank, which is within (hi - lo) / (hi + lo) <= 17.2 % of v, exact below 4 ms. Pass latency_max to bound the top slot (>= 1482910 ms; without it the estimate there is its lower bound). NULL for an empty histogram. Errors: invalid_parameter (22023).';
REVOKE ALL ON FUNCTION tally.histogram_percentile(bigint[], numeric, integer) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.histogram_percentile(bigint[], numeric, integer) TO authenticated, service_role;

-- The bound claimed before ("within about 23 %" of the geometric middle of a bucket) was
-- not about a defined percentile; the comment now points at the one definition.
COMMENT ON FUNCTION tally.latency_buckets() IS
  'The lower bounds (ms) of latency histogram slots 1..41 of the rollups (width_bucket(latency_ms, latency_buckets()) is the slot, 0-based): slot 0 is [0, 1), slot k is [bounds[k], bounds[k+1]), slot 41 is >= 1482910 ms; from 4 ms on each bound is at most 1.5 times the one before (about sqrt(2) times from 16 ms on). Read percentiles with tally.histogram_percentile: the nearest-rank percentile within 17.2 %, exact below 4 ms.';
