-- Model prices: what an LLM call costs per million tokens, by provider and model, with
-- the date each price took effect. Ingestion prices an event that carries tokens but no
-- cost with the price in effect at its occurred_at. A reference table (the same for every
-- tenant), so it has no account_id.

CREATE TABLE tally.model_prices (
  provider                text NOT NULL CHECK (length(provider) BETWEEN 1 AND 200),
  model                   text NOT NULL CHECK (length(model) BETWEEN 1 AND 200),
  effective_from          timestamptz NOT NULL,
  input_usd_per_mtok      numeric(24, 12) NOT NULL CHECK (input_usd_per_mtok >= 0),
  output_usd_per_mtok     numeric(24, 12) NOT NULL CHECK (output_usd_per_mtok >= 0),
  created_at              timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (provider, model, effective_from)
);
COMMENT ON TABLE tally.model_prices IS
  'LLM prices in USD per million input and output tokens, per provider and model, each in effect from effective_from until the next one. Set with tally.set_model_price(); readable by signed-in users.';

ALTER TABLE tally.model_prices ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON TABLE tally.model_prices FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE tally.model_prices TO authenticated, service_role;
CREATE POLICY model_prices_read ON tally.model_prices FOR SELECT TO authenticated, service_role USING (true);

CREATE FUNCTION tally.set_model_price(
  p_provider            text,
  p_model               text,
  p_input_usd_per_mtok  numeric,
  p_output_usd_per_mtok numeric,
  p_effective_from      timestamptz DEFAULT NULL
) RETURNS tally.model_prices
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = ''
  AS $$
DECLARE
  v_row tally.model_prices;
BEGIN
  IF NOT tally._caller_is_service() THEN
    PERFORM tally._raise('forbidden', '42501', 'set_model_price: service callers only');
  END IF;
  IF p_provider IS NULL OR length(p_provider) NOT BETWEEN 1 AND 200 THEN
    PERFORM tally._raise('invalid_parameter', '22023', 'provider: must be 1 to 200 characters');
  END IF;
  IF p_model IS NULL OR length(p_model) NOT BETWEEN 1 AND 200 THEN
    PERFORM tally._raise('invalid_parameter', '22023', 'model: must be 1 to 200 characters');
  END IF;
  IF p_input_usd_per_mtok IS NULL OR p_input_usd_per_mtok < 0 OR p_input_usd_per_mtok >= 1e12 OR p_input_usd_per_mtok = 'NaN' THEN
    PERFORM tally._raise('invalid_parameter', '22023', format('input_usd_per_mtok: must be a non-negative amount (got %s)', p_input_usd_per_mtok));
  END IF;
  IF p_output_usd_per_mtok IS NULL OR p_output_usd_per_mtok < 0 OR p_output_usd_per_mtok >= 1e12 OR p_output_usd_per_mtok = 'NaN' THEN
    PERFORM tally._raise('invalid_parameter', '22023', format('output_usd_per_mtok: must be a non-negative amount (got %s)', p_output_usd_per_mtok));
  END IF;
  IF p_effective_from IN ('infinity', '-infinity') THEN
    PERFORM tally._raise('invalid_parameter', '22023', 'effective_from: must be a finite time');
  END IF;
  INSERT INTO tally.model_prices AS p (provider, model, effective_from, input_usd_per_mtok, output_usd_per_mtok)
  VALUES (p_provider, p_model, coalesce(p_effective_from, now()), p_input_usd_per_mtok, p_output_usd_per_mtok)
  ON CONFLICT (provider, model, effective_from) DO UPDATE
    SET input_usd_per_mtok = excluded.input_usd_per_mtok, output_usd_per_mtok = excluded.output_usd_per_mtok
  RETURNING * INTO v_row;
  RETURN v_row;
END
$$;
COMMENT ON FUNCTION tally.set_model_price(text, text, numeric, numeric, timestamptz) IS
  'Sets the price of a model (USD per million input and output tokens) from p_effective_from (default now); setting the same instant again replaces it. Events already stored keep their cost until tally.reprice() is run over their range. Service callers only. Errors: invalid_parameter (22023), forbidden (42501).';
REVOKE ALL ON FUNCTION tally.set_model_price(text, text, numeric, numeric, timestamptz) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.set_model_price(text, text, numeric, numeric, timestamptz) TO service_role;

-- The price arithmetic, shared by ingestion and reprice so they can never disagree.
CREATE FUNCTION tally._token_cost(p_tokens_in bigint, p_tokens_out bigint, p_input_usd_per_mtok numeric, p_output_usd_per_mtok numeric)
  RETURNS numeric
  LANGUAGE sql IMMUTABLE
  AS $$
    select round((coalesce(p_tokens_in, 0) * p_input_usd_per_mtok + coalesce(p_tokens_out, 0) * p_output_usd_per_mtok) / 1000000, 12)
  $$;
COMMENT ON FUNCTION tally._token_cost(bigint, bigint, numeric, numeric) IS
  'USD cost of tokens_in and tokens_out at the given per-million prices, rounded to 12 decimals (the precision of tally.events.cost_usd).';
REVOKE ALL ON FUNCTION tally._token_cost(bigint, bigint, numeric, numeric) FROM PUBLIC, anon, authenticated, service_role;

CREATE FUNCTION tally.reprice(p_from timestamptz, p_to timestamptz) RETURNS jsonb
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = ''
  AS $$
DECLARE
  v_updated bigint;
BEGIN
  IF NOT tally._caller_is_service() THEN
    PERFORM tally._raise('forbidden', '42501', 'reprice: service callers only');
  END IF;
  IF p_from IS NULL OR p_to IS NULL OR p_from >= p_to THEN
    PERFORM tally._raise('invalid_parameter', '22023', format('from, to: need from < to (got %s, %s)', p_from, p_to));
  END IF;

  WITH priced AS (
    -- events in the range whose cost Tally computed (or could not compute), with the price
    -- in effect at their occurred_at
    SELECT e.account_id, e.occurred_at, e.id, e.cached, e.cost_given, e.potential_cost_given,
           e.cost_usd, e.potential_cost_usd,
           tally._token_cost(e.tokens_in, e.tokens_out, p.input_usd_per_mtok, p.output_usd_per_mtok) AS price
    FROM tally.events e
    CROSS JOIN LATERAL (
      SELECT mp.input_usd_per_mtok, mp.output_usd_per_mtok FROM tally.model_prices mp
      WHERE mp.provider = e.provider AND mp.model = e.model AND mp.effective_from <= e.occurred_at
      ORDER BY mp.effective_from DESC LIMIT 1
    ) p
    WHERE e.occurred_at >= p_from AND e.occurred_at < p_to
      AND (e.tokens_in IS NOT NULL OR e.tokens_out IS NOT NULL)
      AND NOT (e.cost_given AND e.potential_cost_given)
  ),
  new_cost AS (
    -- the rules of ingestion: a cached call costs 0 unless given, otherwise the price; a
    -- price that does not fit cost_usd (10^12 USD or more) leaves the event as it is
    SELECT pr.*, CASE WHEN pr.cost_given THEN pr.cost_usd WHEN pr.cached THEN 0 ELSE pr.price END AS cost
    FROM priced pr
    WHERE pr.price < 1e12
  ),
  recomputed AS (
    -- potential: what a cached call would have cost (the price); an uncached call's cost
    SELECT nc.account_id, nc.occurred_at, nc.id, nc.cost,
           CASE WHEN nc.potential_cost_given THEN nc.potential_cost_usd WHEN nc.cached THEN nc.price ELSE nc.cost END AS potential
    FROM new_cost nc
  )
  UPDATE tally.events e
  SET cost_usd = r.cost, potential_cost_usd = r.potential
  FROM recomputed r
  WHERE e.account_id = r.account_id AND e.occurred_at = r.occurred_at AND e.id = r.id
    AND (e.cost_usd IS DISTINCT FROM r.cost OR e.potential_cost_usd IS DISTINCT FROM r.potential);
  GET DIAGNOSTICS v_updated = ROW_COUNT;
  RETURN jsonb_build_object('repriced', v_updated, 'from', p_from, 'to', p_to);
END
$$;
COMMENT ON FUNCTION tally.reprice(timestamptz, timestamptz) IS
  'Recomputes cost_usd and potential_cost_usd of the LLM events with occurred_at in [p_from, p_to) from tally.model_prices, for the values Tally computed (never a cost the caller gave). Returns {repriced: n events changed}. An explicit correction of the ledger: rollups over the range must be recomputed afterwards. Service callers only.';
REVOKE ALL ON FUNCTION tally.reprice(timestamptz, timestamptz) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION tally.reprice(timestamptz, timestamptz) TO service_role;
