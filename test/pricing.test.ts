/**
 * LLM costs: an event with tokens and no cost is priced from tally.model_prices in effect
 * at its occurred_at; a cached call costs 0 and keeps what it would have cost as
 * potential; a given cost is never replaced. tally.reprice recomputes only what Tally
 * computed. Each test works in its own past year, so reprice counts stay exact.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';
import { createAccount, recordEvents, setSetting } from './helpers/ledger.ts';
import { as, createUser, service, user } from './helpers/personas.ts';

let db: TestDatabase;
let account: string;
beforeAll(async () => {
  db = await migratedDatabase();
  account = await createAccount(db.pool, 'Pricing');
  // these tests use dates from long ago; events older than retention.events are refused at ingest
  await setSetting(db.pool, 'retention.events', '100 years');
});
afterAll(async () => {
  await db?.drop();
});

const setPrice = (provider: string, model: string, input: string, output: string, from: string) =>
  as(db.pool, service, async (c) =>
    (
      await c.query(
        `select * from tally.set_model_price(p_provider => $1::text, p_model => $2::text, p_input_usd_per_mtok => $3::numeric,
                                             p_output_usd_per_mtok => $4::numeric, p_effective_from => $5::timestamptz)`,
        [provider, model, input, output, from],
      )
    ).rows[0],
  );

const reprice = (from: string, to: string) =>
  as(db.pool, service, async (c) => (await c.query('select tally.reprice(p_from => $1::timestamptz, p_to => $2::timestamptz) as r', [from, to])).rows[0].r);

/** Records keyed events (all must be accepted) for the test account. */
async function record(events: Array<Record<string, unknown>>): Promise<void> {
  const result = await recordEvents(
    db.pool,
    events.map((e) => ({ account_id: account, event_type: 'llm.call', ...e })),
  );
  expect(result).toEqual({ accepted: events.length, duplicates: 0, rejected: [] });
}

/** Stored costs by idempotency key. */
async function costs(keys: string[]) {
  const { rows } = await db.pool.query(
    `select idempotency_key as key, cost_usd as cost, potential_cost_usd as potential, cost_given, potential_cost_given
     from tally.events where account_id = $1 and idempotency_key = any($2) order by idempotency_key`,
    [account, keys],
  );
  return Object.fromEntries(rows.map(({ key, ...rest }) => [key, rest]));
}

const computed = (cost: string | null, potential: string | null = cost) => ({ cost, potential, cost_given: false, potential_cost_given: false });

describe('pricing at ingestion', () => {
  it('uses the price in effect at occurred_at', async () => {
    await setPrice('openai', 'gpt-2021', '2.5', '10', '2021-01-01T00:00:00Z');
    await setPrice('openai', 'gpt-2021', '1.25', '5', '2021-06-01T00:00:00Z');
    const llm = { provider: 'openai', model: 'gpt-2021', tokens_in: 1000, tokens_out: 500 };
    await record([
      { ...llm, idempotency_key: 'p-before-any', occurred_at: '2020-12-31T23:59:59Z' },
      { ...llm, idempotency_key: 'p-first', occurred_at: '2021-03-15T00:00:00Z' },
      { ...llm, idempotency_key: 'p-first-last-instant', occurred_at: '2021-05-31T23:59:59.999999Z' },
      { ...llm, idempotency_key: 'p-second-first-instant', occurred_at: '2021-06-01T00:00:00Z' },
      { ...llm, idempotency_key: 'p-second', occurred_at: '2021-07-15T00:00:00+02:00' },
      { ...llm, idempotency_key: 'p-out-only', tokens_in: null, occurred_at: '2021-07-15T00:00:00Z' },
      { ...llm, idempotency_key: 'p-other-model', model: 'gpt-unpriced', occurred_at: '2021-07-15T00:00:00Z' },
      { ...llm, idempotency_key: 'p-no-tokens', tokens_in: undefined, tokens_out: undefined, occurred_at: '2021-07-15T00:00:00Z' },
    ]);
    expect(await costs(['p-before-any', 'p-first', 'p-first-last-instant', 'p-second-first-instant', 'p-second', 'p-out-only', 'p-other-model', 'p-no-tokens'])).toEqual({
      'p-before-any': computed(null),
      'p-first': computed('0.007500000000'), // (1000 × 2.5 + 500 × 10) / 1e6
      'p-first-last-instant': computed('0.007500000000'),
      'p-second-first-instant': computed('0.003750000000'), // (1000 × 1.25 + 500 × 5) / 1e6
      'p-second': computed('0.003750000000'),
      'p-out-only': computed('0.002500000000'),
      'p-other-model': computed(null),
      'p-no-tokens': computed(null),
    });
  });

  it('a cached call costs 0 and keeps its price as potential; given costs are kept', async () => {
    await setPrice('anthropic', 'claude-2021', '3', '15', '2021-01-01T00:00:00Z');
    const llm = { provider: 'anthropic', model: 'claude-2021', tokens_in: 2000, tokens_out: 100, occurred_at: '2021-02-01T00:00:00Z' };
    // price: (2000 × 3 + 100 × 15) / 1e6 = 0.0075
    await record([
      { ...llm, idempotency_key: 'c-cached', cached: true },
      { ...llm, idempotency_key: 'c-cached-given-cost', cached: true, cost_usd: '0.001' },
      { ...llm, idempotency_key: 'c-cached-given-both', cached: true, cost_usd: '0.001', potential_cost_usd: '0.002' },
      { ...llm, idempotency_key: 'c-given-cost', cost_usd: '0.5' },
      { ...llm, idempotency_key: 'c-given-potential', potential_cost_usd: 0.9 },
      { ...llm, idempotency_key: 'c-cached-unpriced', model: 'claude-unpriced', cached: true },
    ]);
    expect(await costs(['c-cached', 'c-cached-given-cost', 'c-cached-given-both', 'c-given-cost', 'c-given-potential', 'c-cached-unpriced'])).toEqual({
      'c-cached': computed('0.000000000000', '0.007500000000'),
      'c-cached-given-cost': { cost: '0.001000000000', potential: '0.007500000000', cost_given: true, potential_cost_given: false },
      'c-cached-given-both': { cost: '0.001000000000', potential: '0.002000000000', cost_given: true, potential_cost_given: true },
      'c-given-cost': { cost: '0.500000000000', potential: '0.500000000000', cost_given: true, potential_cost_given: false },
      'c-given-potential': { cost: '0.007500000000', potential: '0.900000000000', cost_given: false, potential_cost_given: true },
      'c-cached-unpriced': computed('0.000000000000', null),
    });
  });

  it('prices tiny amounts losslessly and huge token counts exactly', async () => {
    await setPrice('tiny', 'm', '0.000001', '0', '2021-01-01T00:00:00Z');
    await setPrice('bulk', 'm', '0.15', '0.6', '2021-01-01T00:00:00Z');
    await record([
      { provider: 'tiny', model: 'm', tokens_in: 1, idempotency_key: 't-one-token', occurred_at: '2021-03-01T00:00:00Z' },
      { provider: 'tiny', model: 'm', tokens_in: '1000000', idempotency_key: 't-million', occurred_at: '2021-03-01T00:00:00Z' },
      { provider: 'bulk', model: 'm', tokens_in: '123456789012', tokens_out: 7, idempotency_key: 't-bulk', occurred_at: '2021-03-01T00:00:00Z' },
    ]);
    expect(await costs(['t-one-token', 't-million', 't-bulk'])).toEqual({
      't-one-token': computed('0.000000000001'),
      't-million': computed('0.000001000000'),
      't-bulk': computed('18518.518356000000'), // (123456789012 × 0.15 + 7 × 0.6) / 1e6
    });
  });

  it('refuses an event whose computed cost would reach 10^12 USD, keeping its siblings', async () => {
    await setPrice('overflow', 'm', '1', '0', '2021-01-01T00:00:00Z');
    const result = await recordEvents(db.pool, [
      { account_id: account, event_type: 'llm.call', provider: 'overflow', model: 'm', tokens_in: '9223372036854775807', occurred_at: '2021-03-01T00:00:00Z' },
      { account_id: account, event_type: 'llm.call', provider: 'overflow', model: 'm', tokens_in: 5, occurred_at: '2021-03-01T00:00:00Z' },
    ]);
    expect(result).toMatchObject({ accepted: 1, rejected: [{ index: 0, code: 'out_of_range', message: expect.stringMatching(/tokens_in/) }] });
  });
});

describe('reprice', () => {
  it('recomputes only the costs Tally computed, in the range, and returns how many changed', async () => {
    await setPrice('openai', 'gpt-2022', '1', '2', '2022-01-01T00:00:00Z');
    const llm = { provider: 'openai', model: 'gpt-2022', tokens_in: 1000, tokens_out: 1000, occurred_at: '2022-03-01T00:00:00Z' };
    await record([
      { ...llm, idempotency_key: 'r-computed' },
      { ...llm, idempotency_key: 'r-cached', cached: true },
      { ...llm, idempotency_key: 'r-cached-given-cost', cached: true, cost_usd: '0.0001' },
      { ...llm, idempotency_key: 'r-given-cost', cost_usd: '0.25' },
      { ...llm, idempotency_key: 'r-given-potential', potential_cost_usd: '0.75' },
      { ...llm, idempotency_key: 'r-given-both', cost_usd: '0.1', potential_cost_usd: '0.2' },
      { ...llm, idempotency_key: 'r-outside', occurred_at: '2022-05-01T00:00:00Z' },
      { ...llm, idempotency_key: 'r-unpriced', model: 'gpt-2022-mini', occurred_at: '2022-03-01T00:00:00Z' },
    ]);
    const keys = ['r-computed', 'r-cached', 'r-cached-given-cost', 'r-given-cost', 'r-given-potential', 'r-given-both', 'r-outside', 'r-unpriced'];
    const before = await costs(keys);
    expect(before['r-computed']).toEqual(computed('0.003000000000'));

    // same instant: the price is replaced
    const replaced = await setPrice('openai', 'gpt-2022', '2', '4', '2022-01-01T00:00:00Z');
    expect(replaced).toMatchObject({ input_usd_per_mtok: '2.000000000000', output_usd_per_mtok: '4.000000000000' });
    // a price that appears later for a model that had none
    await setPrice('openai', 'gpt-2022-mini', '0.5', '0.5', '2021-12-01T00:00:00Z');
    // nothing changes until reprice runs
    expect(await costs(keys)).toEqual(before);

    const result = await reprice('2022-02-01T00:00:00Z', '2022-04-01T00:00:00Z');
    // nothing was rolled up here, so no bucket needed a rebuild (test/reprice.test.ts covers that)
    expect(result).toEqual({
      repriced: 5,
      from: '2022-02-01T00:00:00+00:00',
      to: '2022-04-01T00:00:00+00:00',
      rebuilt_buckets: { hourly: 0, daily: 0, monthly: 0 },
    });
    expect(await costs(keys)).toEqual({
      ...before,
      'r-computed': computed('0.006000000000'),
      'r-cached': computed('0.000000000000', '0.006000000000'),
      'r-cached-given-cost': { cost: '0.000100000000', potential: '0.006000000000', cost_given: true, potential_cost_given: false },
      'r-given-potential': { cost: '0.006000000000', potential: '0.750000000000', cost_given: false, potential_cost_given: true },
      'r-unpriced': computed('0.001000000000'),
    });

    // reprice is idempotent; the event outside the range follows when its range is repriced
    expect(await reprice('2022-02-01T00:00:00Z', '2022-04-01T00:00:00Z')).toMatchObject({ repriced: 0 });
    expect(await reprice('2022-01-01T00:00:00Z', '2023-01-01T00:00:00Z')).toMatchObject({ repriced: 1 });
    expect((await costs(['r-outside']))['r-outside']).toEqual(computed('0.006000000000'));
  });

  it('refuses an empty or inverted range', async () => {
    for (const [from, to] of [
      ['2022-02-01T00:00:00Z', '2022-02-01T00:00:00Z'],
      ['2022-03-01T00:00:00Z', '2022-02-01T00:00:00Z'],
    ]) {
      await expect(reprice(from!, to!)).rejects.toMatchObject({ code: '22023', hint: 'invalid_parameter' });
    }
    await expect(as(db.pool, service, (c) => c.query('select tally.reprice(null, now())'))).rejects.toMatchObject({ code: '22023', hint: 'invalid_parameter' });
  });
});

describe('set_model_price', () => {
  it.each([
    ['', 'm', '1', '1', /provider/],
    ['p', 'x'.repeat(201), '1', '1', /model/],
    ['p', 'm', '-1', '1', /input_usd_per_mtok/],
    ['p', 'm', 'NaN', '1', /input_usd_per_mtok/],
    ['p', 'm', '1', '1e12', /output_usd_per_mtok/],
    ['p', 'm', '1', '-0.000001', /output_usd_per_mtok/],
  ])('refuses provider %j model %j input %s output %s', async (provider, model, input, output, field) => {
    await expect(setPrice(provider, model, input, output, '2021-01-01T00:00:00Z')).rejects.toMatchObject({
      code: '22023',
      hint: 'invalid_parameter',
      message: expect.stringMatching(field),
    });
  });

  it('refuses an infinite effective_from and defaults it to now', async () => {
    await expect(setPrice('p', 'm', '1', '1', 'infinity')).rejects.toMatchObject({ code: '22023', hint: 'invalid_parameter', message: expect.stringMatching(/effective_from/) });
    const { rows } = await as(db.pool, service, (c) =>
      c.query("select effective_from = now() as now from tally.set_model_price(p_provider => 'p', p_model => 'now', p_input_usd_per_mtok => 1, p_output_usd_per_mtok => 1)"),
    );
    expect(rows).toEqual([{ now: true }]);
  });

  it('signed-in users read prices but cannot set them', async () => {
    const alice = await createUser(db.pool);
    await expect(as(db.pool, user(alice), (c) => c.query("select tally.set_model_price('p', 'm', 1, 1)"))).rejects.toMatchObject({ code: '42501' });
    const { rows } = await as(db.pool, user(alice), (c) => c.query("select count(*)::int as n from tally.model_prices where provider = 'openai'"));
    expect(rows[0].n).toBeGreaterThan(0);
  });
});
