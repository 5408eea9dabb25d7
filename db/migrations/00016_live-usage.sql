-- Real-time reads: the aggregates plus the tail of events the rollups have not folded yet.
--
-- usage_hourly_live, usage_daily_live and usage_monthly_live have the columns of their
-- tables and are exact at any moment, not as of the last run: each adds the events past
-- the watermark (not voided) to the stored rows. Their cost is bounded by the tail: a
-- query's filters on account_id and bucket reach the stored table's primary key through
-- the GROUP BY and the UNION ALL, and the tail comes from tally.events_tail(), which finds
-- it through the id index. They are
-- security_invoker views, so RLS on the tables and on tally.events applies to the reader.

-- The watermark, readable by every role that may read aggregates (rollup_state is not).
CREATE FUNCTION tally.rollup_watermark() RETURNS bigint
  LANGUAGE sql STABLE
  SECURITY DEFINER
  SET search_path = ''
  AS $$ select s.watermark from tally.rollup_state s $$;
COMMENT ON FUNCTION tally.rollup_watermark() IS
  'The rollups'' watermark: events with a higher id are not in usage_hourly/daily/monthly yet (the *_live views add them).';
REVOKE ALL ON FUNCTION tally.rollup_watermark() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.rollup_watermark() TO authenticated, service_role;

-- The events past the watermark, not voided: the tail the live views add. The watermark is
-- put into the statement as a constant, so the planner sees how few ids lie above it and
-- reads them through the id index, whatever the history behind. Runs as the caller, so
-- row-level security on tally.events applies.
CREATE FUNCTION tally.events_tail() RETURNS SETOF tally.events
  LANGUAGE plpgsql STABLE
  SET search_path = ''
  AS $$
BEGIN
  RETURN QUERY EXECUTE format(
    'SELECT e.* FROM tally.events e WHERE e.id > %s
       AND NOT EXISTS (SELECT 1 FROM tally.event_voids v WHERE v.account_id = e.account_id AND v.event_id = e.id)',
    tally.rollup_watermark());
END
$$;
COMMENT ON FUNCTION tally.events_tail() IS
  'The events the rollups have not folded yet (id above the watermark, not voided), as the caller may see them under RLS.';
REVOKE ALL ON FUNCTION tally.events_tail() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.events_tail() TO authenticated, service_role;

-- A latency histogram holding one event (all zeros when there is no latency).
CREATE FUNCTION tally._hist_one(p_latency_ms integer) RETURNS bigint[]
  LANGUAGE sql IMMUTABLE
  AS $$ select tally._hist_sfunc(NULL, pg_catalog.width_bucket(p_latency_ms, tally.latency_buckets()), CASE WHEN p_latency_ms IS NULL THEN NULL ELSE 1 END) $$;
COMMENT ON FUNCTION tally._hist_one(integer) IS 'The 42-slot latency histogram of a single event.';
REVOKE ALL ON FUNCTION tally._hist_one(integer) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally._hist_one(integer) TO authenticated, service_role;

CREATE AGGREGATE tally._hist_sum(bigint[]) (SFUNC = tally._hist_add, STYPE = bigint[]);
COMMENT ON AGGREGATE tally._hist_sum(bigint[]) IS 'Adds latency histograms slot by slot.';
REVOKE ALL ON FUNCTION tally._hist_sum(bigint[]) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally._hist_sum(bigint[]) TO authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally._hist_add(bigint[], bigint[]), tally._hist_sfunc(bigint[], integer, bigint),
                          tally._dim_key(uuid, text, text, text, text, text), tally.latency_buckets()
  TO authenticated, service_role;

CREATE VIEW tally.usage_hourly_live WITH (security_invoker = true) AS
  SELECT x.account_id, x.bucket, x.dim_key, x.api_key_id, x.event_type, x.provider, x.model, x.endpoint, x.file_type,
         sum(x.requests)::bigint AS requests, sum(x.successful)::bigint AS successful, sum(x.failed)::bigint AS failed,
         sum(x.cached)::bigint AS cached, sum(x.files) AS files, sum(x.bytes) AS bytes, sum(x.tokens_in) AS tokens_in,
         sum(x.tokens_out) AS tokens_out, sum(x.cost_usd) AS cost_usd, sum(x.potential_cost_usd) AS potential_cost_usd,
         sum(x.quantity) AS quantity, sum(x.latency_count)::bigint AS latency_count, sum(x.latency_sum) AS latency_sum,
         max(x.latency_max) AS latency_max, tally._hist_sum(x.latency_hist) AS latency_hist
  FROM (
    SELECT u.account_id, u.bucket, u.dim_key, u.api_key_id, u.event_type, u.provider, u.model, u.endpoint, u.file_type,
           u.requests, u.successful, u.failed, u.cached, u.files, u.bytes, u.tokens_in, u.tokens_out, u.cost_usd,
           u.potential_cost_usd, u.quantity, u.latency_count, u.latency_sum, u.latency_max, u.latency_hist
    FROM tally.usage_hourly u
    UNION ALL
    -- the tail: events past the watermark, one row each
    SELECT e.account_id, date_trunc('hour', e.occurred_at, 'UTC'), tally._dim_key(e.api_key_id, e.event_type, e.provider, e.model, e.endpoint, e.file_type),
           e.api_key_id, e.event_type, e.provider, e.model, e.endpoint, e.file_type,
           1, CASE WHEN e.success THEN 1 ELSE 0 END, CASE WHEN e.success THEN 0 ELSE 1 END, CASE WHEN e.cached THEN 1 ELSE 0 END,
           coalesce(e.files, 0), coalesce(e.bytes, 0), coalesce(e.tokens_in, 0), coalesce(e.tokens_out, 0),
           coalesce(e.cost_usd, 0), coalesce(e.potential_cost_usd, 0), e.quantity,
           CASE WHEN e.latency_ms IS NULL THEN 0 ELSE 1 END, coalesce(e.latency_ms, 0), e.latency_ms, tally._hist_one(e.latency_ms)
    FROM tally.events_tail() e 
  ) x
  GROUP BY x.account_id, x.bucket, x.dim_key, x.api_key_id, x.event_type, x.provider, x.model, x.endpoint, x.file_type;
COMMENT ON VIEW tally.usage_hourly_live IS
  'tally.usage_hourly plus the events not folded yet: exact usage per the UTC hour and dimension tuple at any moment. Filter on account_id and bucket; the cost is the matching rows plus the unfolded tail.';
REVOKE ALL ON TABLE tally.usage_hourly_live FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE tally.usage_hourly_live TO authenticated, service_role;

CREATE VIEW tally.usage_daily_live WITH (security_invoker = true) AS
  SELECT x.account_id, x.bucket, x.dim_key, x.api_key_id, x.event_type, x.provider, x.model, x.endpoint, x.file_type,
         sum(x.requests)::bigint AS requests, sum(x.successful)::bigint AS successful, sum(x.failed)::bigint AS failed,
         sum(x.cached)::bigint AS cached, sum(x.files) AS files, sum(x.bytes) AS bytes, sum(x.tokens_in) AS tokens_in,
         sum(x.tokens_out) AS tokens_out, sum(x.cost_usd) AS cost_usd, sum(x.potential_cost_usd) AS potential_cost_usd,
         sum(x.quantity) AS quantity, sum(x.latency_count)::bigint AS latency_count, sum(x.latency_sum) AS latency_sum,
         max(x.latency_max) AS latency_max, tally._hist_sum(x.latency_hist) AS latency_hist
  FROM (
    SELECT u.account_id, u.bucket, u.dim_key, u.api_key_id, u.event_type, u.provider, u.model, u.endpoint, u.file_type,
           u.requests, u.successful, u.failed, u.cached, u.files, u.bytes, u.tokens_in, u.tokens_out, u.cost_usd,
           u.potential_cost_usd, u.quantity, u.latency_count, u.latency_sum, u.latency_max, u.latency_hist
    FROM tally.usage_daily u
    UNION ALL
    -- the tail: events past the watermark, one row each
    SELECT e.account_id, (e.occurred_at AT TIME ZONE a.timezone)::date, tally._dim_key(e.api_key_id, e.event_type, e.provider, e.model, e.endpoint, e.file_type),
           e.api_key_id, e.event_type, e.provider, e.model, e.endpoint, e.file_type,
           1, CASE WHEN e.success THEN 1 ELSE 0 END, CASE WHEN e.success THEN 0 ELSE 1 END, CASE WHEN e.cached THEN 1 ELSE 0 END,
           coalesce(e.files, 0), coalesce(e.bytes, 0), coalesce(e.tokens_in, 0), coalesce(e.tokens_out, 0),
           coalesce(e.cost_usd, 0), coalesce(e.potential_cost_usd, 0), e.quantity,
           CASE WHEN e.latency_ms IS NULL THEN 0 ELSE 1 END, coalesce(e.latency_ms, 0), e.latency_ms, tally._hist_one(e.latency_ms)
    FROM tally.events_tail() e JOIN tally.accounts a ON a.id = e.account_id
  ) x
  GROUP BY x.account_id, x.bucket, x.dim_key, x.api_key_id, x.event_type, x.provider, x.model, x.endpoint, x.file_type;
COMMENT ON VIEW tally.usage_daily_live IS
  'tally.usage_daily plus the events not folded yet: exact usage per the calendar day in the account''s time zone and dimension tuple at any moment. Filter on account_id and bucket; the cost is the matching rows plus the unfolded tail.';
REVOKE ALL ON TABLE tally.usage_daily_live FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE tally.usage_daily_live TO authenticated, service_role;

CREATE VIEW tally.usage_monthly_live WITH (security_invoker = true) AS
  SELECT x.account_id, x.bucket, x.dim_key, x.api_key_id, x.event_type, x.provider, x.model, x.endpoint, x.file_type,
         sum(x.requests)::bigint AS requests, sum(x.successful)::bigint AS successful, sum(x.failed)::bigint AS failed,
         sum(x.cached)::bigint AS cached, sum(x.files) AS files, sum(x.bytes) AS bytes, sum(x.tokens_in) AS tokens_in,
         sum(x.tokens_out) AS tokens_out, sum(x.cost_usd) AS cost_usd, sum(x.potential_cost_usd) AS potential_cost_usd,
         sum(x.quantity) AS quantity, sum(x.latency_count)::bigint AS latency_count, sum(x.latency_sum) AS latency_sum,
         max(x.latency_max) AS latency_max, tally._hist_sum(x.latency_hist) AS latency_hist
  FROM (
    SELECT u.account_id, u.bucket, u.dim_key, u.api_key_id, u.event_type, u.provider, u.model, u.endpoint, u.file_type,
           u.requests, u.successful, u.failed, u.cached, u.files, u.bytes, u.tokens_in, u.tokens_out, u.cost_usd,
           u.potential_cost_usd, u.quantity, u.latency_count, u.latency_sum, u.latency_max, u.latency_hist
    FROM tally.usage_monthly u
    UNION ALL
    -- the tail: events past the watermark, one row each
    SELECT e.account_id, date_trunc('month', e.occurred_at AT TIME ZONE a.timezone)::date, tally._dim_key(e.api_key_id, e.event_type, e.provider, e.model, e.endpoint, e.file_type),
           e.api_key_id, e.event_type, e.provider, e.model, e.endpoint, e.file_type,
           1, CASE WHEN e.success THEN 1 ELSE 0 END, CASE WHEN e.success THEN 0 ELSE 1 END, CASE WHEN e.cached THEN 1 ELSE 0 END,
           coalesce(e.files, 0), coalesce(e.bytes, 0), coalesce(e.tokens_in, 0), coalesce(e.tokens_out, 0),
           coalesce(e.cost_usd, 0), coalesce(e.potential_cost_usd, 0), e.quantity,
           CASE WHEN e.latency_ms IS NULL THEN 0 ELSE 1 END, coalesce(e.latency_ms, 0), e.latency_ms, tally._hist_one(e.latency_ms)
    FROM tally.events_tail() e JOIN tally.accounts a ON a.id = e.account_id
  ) x
  GROUP BY x.account_id, x.bucket, x.dim_key, x.api_key_id, x.event_type, x.provider, x.model, x.endpoint, x.file_type;
COMMENT ON VIEW tally.usage_monthly_live IS
  'tally.usage_monthly plus the events not folded yet: exact usage per the calendar month in the account''s time zone and dimension tuple at any moment. Filter on account_id and bucket; the cost is the matching rows plus the unfolded tail.';
REVOKE ALL ON TABLE tally.usage_monthly_live FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE tally.usage_monthly_live TO authenticated, service_role;
