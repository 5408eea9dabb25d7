/**
 * The seven dashboard functions (migration 36) against small fixtures whose answers are
 * written by hand from the events listed next to them. Every check runs twice: first on the
 * unfolded tail (the events are recorded, not rolled up yet), then after tally.run_rollups,
 * with the same answer (the functions are exact at any moment).
 *
 * Calendars used: America/New_York springs forward on 2026-03-08 (a 23-hour day: local
 * midnights 05:00Z and then 04:00Z) and falls back on 2026-11-01 (25 hours: 04:00Z to
 * 05:00Z next day); Asia/Kolkata is UTC+05:30 (a local day starts at 18:30Z the day before).
 * 2026-03-02, 2026-03-09 and 2026-05-11 are Mondays.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';
import { createAccount, createApiKey, recordEvents, setSetting } from './helpers/ledger.ts';
import {
  EMPTY, M, METRIC_COLUMNS, breakdown, comparePeriods, comparison, dashboardStats, drain, metricsOf, periodSummary, topEndpoints,
  usageHistory, usageSeries, type Row,
} from './helpers/analytics.ts';

let db: TestDatabase;
beforeAll(async () => {
  db = await migratedDatabase();
  // the fixtures are dated in 2026: keep every grain's rows and the raw events whatever the day the tests run
  for (const name of ['retention.events', 'retention.hourly', 'retention.daily']) await setSetting(db.pool, name, '100 years');
});
afterAll(async () => {
  await db?.drop();
});

type Fields = Record<string, unknown>;
const ev = (account: string, at: string | undefined, fields: Fields = {}) => ({ account_id: account, event_type: 'api_request', occurred_at: at, ...fields });

async function record(events: object[]): Promise<void> {
  expect(await recordEvents(db.pool, events)).toEqual({ accepted: events.length, duplicates: 0, rejected: [] });
}

/** How many of the account's events the rollups have not folded yet. */
async function unfolded(account: string): Promise<number> {
  const { rows } = await db.pool.query(
    'select count(*)::int as n from tally.events where account_id = $1 and id > (select watermark from tally.rollup_state)',
    [account],
  );
  return rows[0].n;
}

/** The check on the unfolded tail (asserting there is one), then after run_rollups. */
async function twice(account: string, check: () => Promise<void>): Promise<void> {
  expect(await unfolded(account), 'the fixture is not folded yet').toBeGreaterThan(0);
  await check();
  await drain(db.pool);
  expect(await unfolded(account)).toBe(0);
  await check();
}

/** A series row: its bucket and its metrics. */
const bucket = (start: string, end: string, localDate: string, metrics = EMPTY) => ({
  bucket_start: new Date(start).toISOString(),
  bucket_end: new Date(end).toISOString(),
  local_date: localDate,
  ...metrics,
});

describe('get_usage_series', () => {
  it('day buckets in New York across the spring-forward day: each the local day, gap-filled, every metric', async () => {
    const ny = await createAccount(db.pool, 'NY spring', null, 'America/New_York');
    await record([
      ev(ny, '2026-03-07T12:00:00Z', { latency_ms: 100, status_code: 200, cost_usd: '0.25', potential_cost_usd: '0.25', bytes: 1000, files: 1, tokens_in: 10, tokens_out: 5 }),
      // 23:59:59 EST on the 7th: a failed, cached call that saved 0.5
      ev(ny, '2026-03-08T04:59:59Z', { latency_ms: 300, status_code: 500, cached: true, cost_usd: '0', potential_cost_usd: '0.5' }),
      ev(ny, '2026-03-08T05:00:00Z', { latency_ms: 50 }), // 00:00 EST on the 8th
      // 23:59:59 EDT on the 8th: tokens without a price (unpriced), no latency
      ev(ny, '2026-03-09T03:59:59Z', { event_type: 'llm_call', provider: 'openai', model: 'gpt-x', tokens_in: 100 }),
      ev(ny, '2026-03-09T04:00:00Z', { latency_ms: 7 }), // 00:00 EDT on the 9th
    ]);
    const day7 = M({
      requests: 2, successful: 1, failed: 1, cached: 1, cache_hit_pct: '50', files: '1', bytes: '1000', tokens_in: '10', tokens_out: '5',
      tokens_total: '15', cost_usd: '0.25', potential_cost_usd: '0.75', savings_usd: '0.5', quantity: '2', avg_latency_ms: '200',
      // p50: rank 1 of 2 is 100 ms, slot [91, 127]: 2 * 91 * 127 / 218 = 106.0275...; p95, p99: rank 2 of 2 = latency_max
      p50_latency_ms: '106.03', p95_latency_ms: '300', p99_latency_ms: '300',
    });
    const day8 = M({
      requests: 2, successful: 2, tokens_in: '100', tokens_total: '100', quantity: '2', unpriced: 1,
      avg_latency_ms: '50', p50_latency_ms: '50', p95_latency_ms: '50', p99_latency_ms: '50',
    });
    const day9 = M({ requests: 1, successful: 1, quantity: '1', avg_latency_ms: '7', p50_latency_ms: '7', p95_latency_ms: '7', p99_latency_ms: '7' });
    await twice(ny, async () => {
      expect(await usageSeries(db.pool, ny, '2026-03-06T05:00:00Z', '2026-03-11T04:00:00Z', 'day')).toEqual([
        bucket('2026-03-06T05:00:00Z', '2026-03-07T05:00:00Z', '2026-03-06'),
        bucket('2026-03-07T05:00:00Z', '2026-03-08T05:00:00Z', '2026-03-07', day7),
        bucket('2026-03-08T05:00:00Z', '2026-03-09T04:00:00Z', '2026-03-08', day8), // 23 hours
        bucket('2026-03-09T04:00:00Z', '2026-03-10T04:00:00Z', '2026-03-09', day9),
        bucket('2026-03-10T04:00:00Z', '2026-03-11T04:00:00Z', '2026-03-10'),
      ]);
      // instants inside a day widen to the whole day; 'day' is the default granularity
      const widened = await usageSeries(db.pool, ny, '2026-03-08T12:00:00Z', '2026-03-08T12:00:00.000001Z');
      expect(widened).toEqual([bucket('2026-03-08T05:00:00Z', '2026-03-09T04:00:00Z', '2026-03-08', day8)]);
      // a filter matches the events whose value is in the list; an absent value never matches
      const openai = M({ requests: 1, successful: 1, tokens_in: '100', tokens_total: '100', quantity: '1', unpriced: 1 });
      for (const filters of [{ providers: ['openai'] }, { providers: ['openai', 'nobody'], models: ['gpt-x'] }, { eventTypes: ['llm_call'] }]) {
        const rows = await usageSeries(db.pool, ny, '2026-03-07T05:00:00Z', '2026-03-10T04:00:00Z', 'day', filters);
        expect(rows.map((r) => [r.local_date, metricsOf(r)]), JSON.stringify(filters)).toEqual([
          ['2026-03-07', EMPTY],
          ['2026-03-08', openai],
          ['2026-03-09', EMPTY],
        ]);
      }
      expect((await usageSeries(db.pool, ny, '2026-03-07T05:00:00Z', '2026-03-10T04:00:00Z', 'day', { providers: ['anthropic'] })).map((r) => r.requests)).toEqual([0, 0, 0]);
      // hours are UTC hours; local_date is the local date at the hour's start
      expect(await usageSeries(db.pool, ny, '2026-03-08T04:30:00Z', '2026-03-08T05:30:00Z', 'hour')).toEqual([
        bucket('2026-03-08T04:00:00Z', '2026-03-08T05:00:00Z', '2026-03-07', M({
          requests: 1, failed: 1, cached: 1, cache_hit_pct: '100', potential_cost_usd: '0.5', savings_usd: '0.5', quantity: '1',
          avg_latency_ms: '300', p50_latency_ms: '300', p95_latency_ms: '300', p99_latency_ms: '300',
        })),
        bucket('2026-03-08T05:00:00Z', '2026-03-08T06:00:00Z', '2026-03-08', M({
          requests: 1, successful: 1, quantity: '1', avg_latency_ms: '50', p50_latency_ms: '50', p95_latency_ms: '50', p99_latency_ms: '50',
        })),
      ]);
    });
  });

  it('the fall-back day in New York is one 25-hour bucket holding exactly its events', async () => {
    const ny = await createAccount(db.pool, 'NY fall', null, 'America/New_York');
    await record([
      ev(ny, '2026-10-31T03:59:59Z'), // 23:59:59 EDT on Oct 30: outside the range
      ev(ny, '2026-11-01T03:59:59Z'), // 23:59:59 EDT on Oct 31
      ev(ny, '2026-11-01T04:00:00Z'), // 00:00 EDT on Nov 1
      ev(ny, '2026-11-01T05:30:00Z'), // 01:30 EDT
      ev(ny, '2026-11-01T06:30:00Z'), // 01:30 EST, the same wall clock an hour later
      ev(ny, '2026-11-02T04:59:59Z'), // 23:59:59 EST on Nov 1
      ev(ny, '2026-11-02T05:00:00Z'), // 00:00 EST on Nov 2
    ]);
    const n = (requests: number) => M({ requests, successful: requests, quantity: String(requests) });
    await twice(ny, async () => {
      expect(await usageSeries(db.pool, ny, '2026-10-31T12:00:00Z', '2026-11-02T12:00:00Z', 'day')).toEqual([
        bucket('2026-10-31T04:00:00Z', '2026-11-01T04:00:00Z', '2026-10-31', n(1)),
        bucket('2026-11-01T04:00:00Z', '2026-11-02T05:00:00Z', '2026-11-01', n(4)), // 25 hours
        bucket('2026-11-02T05:00:00Z', '2026-11-03T05:00:00Z', '2026-11-02', n(1)),
      ]);
      // the two 01:30s are two UTC hours of the same local day
      const hours = await usageSeries(db.pool, ny, '2026-11-01T05:00:00Z', '2026-11-01T07:00:00Z', 'hour');
      expect(hours.map((r) => [r.bucket_start, r.local_date, r.requests])).toEqual([
        ['2026-11-01T05:00:00.000Z', '2026-11-01', 1],
        ['2026-11-01T06:00:00.000Z', '2026-11-01', 1],
      ]);
    });
  });

  it('Asia/Kolkata: a local day starts at 18:30 UTC; 18:29 and 18:31 are different days; months likewise', async () => {
    const ist = await createAccount(db.pool, 'IST series', null, 'Asia/Kolkata');
    await record([
      ev(ist, '2026-04-09T18:29:00Z'), // 23:59 on Apr 9
      ev(ist, '2026-04-09T18:31:00Z'), // 00:01 on Apr 10
      ev(ist, '2026-04-30T18:29:59Z'), // 23:59:59 on Apr 30
      ev(ist, '2026-04-30T18:30:00Z'), // 00:00 on May 1
    ]);
    const n = (requests: number) => M({ requests, successful: requests, quantity: String(requests) });
    await twice(ist, async () => {
      // 00:00Z is 05:30 on the 9th, 23:59:59.999999Z is 05:29 on the 10th
      expect(await usageSeries(db.pool, ist, '2026-04-09T00:00:00Z', '2026-04-10T00:00:00Z', 'day')).toEqual([
        bucket('2026-04-08T18:30:00Z', '2026-04-09T18:30:00Z', '2026-04-09', n(1)),
        bucket('2026-04-09T18:30:00Z', '2026-04-10T18:30:00Z', '2026-04-10', n(1)),
      ]);
      // both are in the UTC hour 18:00, which starts at 23:30 on the 9th
      expect(await usageSeries(db.pool, ist, '2026-04-09T18:10:00Z', '2026-04-09T18:50:00Z', 'hour')).toEqual([
        bucket('2026-04-09T18:00:00Z', '2026-04-09T19:00:00Z', '2026-04-09', n(2)),
      ]);
      expect(await usageSeries(db.pool, ist, '2026-04-15T00:00:00Z', '2026-05-15T00:00:00Z', 'month')).toEqual([
        bucket('2026-03-31T18:30:00Z', '2026-04-30T18:30:00Z', '2026-04-01', n(3)),
        bucket('2026-04-30T18:30:00Z', '2026-05-31T18:30:00Z', '2026-05-01', n(1)),
      ]);
    });
  });

  it('weeks are ISO weeks from Monday 00:00 local, months local months, across the DST change', async () => {
    const ny = await createAccount(db.pool, 'NY weeks', null, 'America/New_York');
    await record([
      ev(ny, '2026-03-01T04:59:59Z'), // Sat Feb 28 23:59:59 EST: week of Feb 23, February
      ev(ny, '2026-03-02T04:59:59Z'), // Sun Mar 1 23:59:59 EST: week of Feb 23, March
      ev(ny, '2026-03-02T05:00:00Z'), // Mon Mar 2 00:00 EST: week of Mar 2
      ev(ny, '2026-03-09T03:30:00Z'), // Sun Mar 8 23:30 EDT: week of Mar 2
      ev(ny, '2026-03-09T04:00:00Z'), // Mon Mar 9 00:00 EDT: week of Mar 9
      ev(ny, '2026-03-20T12:00:00Z'), // Fri Mar 20: week of Mar 16
      ev(ny, '2026-04-01T04:00:00Z'), // Apr 1 00:00 EDT: April, outside the month range below
    ]);
    const n = (requests: number) => M({ requests, successful: requests, quantity: String(requests) });
    await twice(ny, async () => {
      // from Tue Feb 24 19:00 EST to Tue Mar 24 20:00 EDT
      expect(await usageSeries(db.pool, ny, '2026-02-25T00:00:00Z', '2026-03-25T00:00:00Z', 'week')).toEqual([
        bucket('2026-02-23T05:00:00Z', '2026-03-02T05:00:00Z', '2026-02-23', n(2)),
        bucket('2026-03-02T05:00:00Z', '2026-03-09T04:00:00Z', '2026-03-02', n(2)), // 167 hours
        bucket('2026-03-09T04:00:00Z', '2026-03-16T04:00:00Z', '2026-03-09', n(1)),
        bucket('2026-03-16T04:00:00Z', '2026-03-23T04:00:00Z', '2026-03-16', n(1)),
        bucket('2026-03-23T04:00:00Z', '2026-03-30T04:00:00Z', '2026-03-23'),
      ]);
      // to Mar 31 23:00 EDT
      expect(await usageSeries(db.pool, ny, '2026-02-15T00:00:00Z', '2026-04-01T03:00:00Z', 'month')).toEqual([
        bucket('2026-02-01T05:00:00Z', '2026-03-01T05:00:00Z', '2026-02-01', n(1)),
        bucket('2026-03-01T05:00:00Z', '2026-04-01T04:00:00Z', '2026-03-01', n(5)),
      ]);
    });
  });
});

/** The ranking columns of breakdown rows (raw numerics: share_pct as printed). */
const ranking = (rows: Row[]) => rows.map((r) => [r.rank, r.value, r.label, r.is_other, r.share_pct, r.requests]);

describe('get_breakdown', () => {
  it('ranks the values of a dimension over local days (both included), folds the rest into other, shares sum to 100.00', async () => {
    const acct = await createAccount(db.pool, 'Breakdown');
    const day = '2026-05-05T';
    const on = (n: number, at: string, fields: Fields) => Array.from({ length: n }, (_, i) => ev(acct, `${at}${String(10 + i).padStart(2, '0')}:00:00Z`, fields));
    await record([
      ...on(5, day, { event_type: 'llm_call', provider: 'openai', cost_usd: '0.1' }),
      ...on(3, day, { event_type: 'llm_call', provider: 'anthropic', cost_usd: '0.2' }),
      ev(acct, `${day}01:00:00Z`, { event_type: 'llm_call', provider: 'google', latency_ms: 10 }),
      ev(acct, `${day}02:00:00Z`, { event_type: 'llm_call', provider: 'google', latency_ms: 20 }),
      ...on(2, day, { event_type: 'llm_call' }), // no provider
      ev(acct, `${day}03:00:00Z`, { provider: 'mistral', latency_ms: 30 }), // an api_request
      ev(acct, '2026-05-04T23:59:59Z', { event_type: 'llm_call', provider: 'openai' }),
      ev(acct, '2026-05-06T00:00:00Z', { event_type: 'llm_call', provider: 'anthropic' }),
    ]);
    await twice(acct, async () => {
      // 13 requests: 5/13 = 38.46.., 3/13 = 23.076.., 2/13 = 15.384.. (twice), 1/13 = 7.692..: rounded
      // one by one they sum to 99.99; the largest remainders (anthropic .69, then google by rank) get the hundredths
      expect(ranking(await breakdown(db.pool, acct, 'provider', '2026-05-05', '2026-05-05', {}, { raw: true }))).toEqual([
        [1, 'openai', 'openai', false, '38.46', 5],
        [2, 'anthropic', 'anthropic', false, '23.08', 3],
        [3, 'google', 'google', false, '15.39', 2],
        [4, null, '(none)', false, '15.38', 2], // ties go by value, the absent one last
        [5, 'mistral', 'mistral', false, '7.69', 1],
      ]);
      // limit 2: google, (none) and mistral fold into other (rank 3), with their merged metrics
      const limited = await breakdown(db.pool, acct, 'provider', '2026-05-05', '2026-05-05', { limit: 2 }, { raw: true });
      expect(ranking(limited)).toEqual([
        [1, 'openai', 'openai', false, '38.46', 5],
        [2, 'anthropic', 'anthropic', false, '23.08', 3],
        [3, null, 'other', true, '38.46', 5],
      ]);
      // latencies 10, 20, 30: avg 20, p50 rank 2 = 20 in slot [16, 22]: 2 * 16 * 22 / 38 = 18.526..; p95 = latency_max
      expect(limited[2]).toMatchObject({ successful: 5, failed: 0, cost_usd: '0', quantity: '5.000000000000', avg_latency_ms: '20.00', p50_latency_ms: '18.53', p95_latency_ms: '30', p99_latency_ms: '30' });
      expect(limited[0]).toMatchObject({ cost_usd: '0.500000000000', avg_latency_ms: null, p50_latency_ms: null });
      // three days, both ends included: 15 requests
      expect(ranking(await breakdown(db.pool, acct, 'provider', '2026-05-04', '2026-05-06', {}, { raw: true }))).toEqual([
        [1, 'openai', 'openai', false, '40.00', 6],
        [2, 'anthropic', 'anthropic', false, '26.67', 4],
        [3, 'google', 'google', false, '13.33', 2],
        [4, null, '(none)', false, '13.33', 2],
        [5, 'mistral', 'mistral', false, '6.67', 1],
      ]);
      // by cost: 0.6 and 0.5 of 1.1 (54.5454.., 45.4545..); the zeros follow by value, the absent one last
      expect(ranking(await breakdown(db.pool, acct, 'provider', '2026-05-05', '2026-05-05', { measure: 'cost' }, { raw: true }))).toEqual([
        [1, 'anthropic', 'anthropic', false, '54.55', 3],
        [2, 'openai', 'openai', false, '45.45', 5],
        [3, 'google', 'google', false, '0.00', 2],
        [4, 'mistral', 'mistral', false, '0.00', 1],
        [5, null, '(none)', false, '0.00', 2],
      ]);
      // a filter on the dimension itself, and one on another dimension (mistral's event is an api_request)
      expect(ranking(await breakdown(db.pool, acct, 'provider', '2026-05-05', '2026-05-05', { filters: { providers: ['openai', 'google'] } }, { raw: true }))).toEqual([
        [1, 'openai', 'openai', false, '71.43', 5],
        [2, 'google', 'google', false, '28.57', 2],
      ]);
      expect(ranking(await breakdown(db.pool, acct, 'provider', '2026-05-05', '2026-05-05', { filters: { eventTypes: ['llm_call'] } }, { raw: true }))).toEqual([
        [1, 'openai', 'openai', false, '41.67', 5],
        [2, 'anthropic', 'anthropic', false, '25.00', 3],
        [3, 'google', 'google', false, '16.67', 2],
        [4, null, '(none)', false, '16.66', 2],
      ]);
      expect(ranking(await breakdown(db.pool, acct, 'event_type', '2026-05-05', '2026-05-05', {}, { raw: true }))).toEqual([
        [1, 'llm_call', 'llm_call', false, '92.31', 12],
        [2, 'api_request', 'api_request', false, '7.69', 1],
      ]);
      // nothing in the range: no rows
      expect(await breakdown(db.pool, acct, 'provider', '2026-05-10', '2026-05-12')).toEqual([]);
    });
  });

  it('largest-remainder rounding: three equal thirds give 33.34 + 33.33 + 33.33, and 4/6 + 1/6 + 1/6 gives 66.67 + 16.67 + 16.66', async () => {
    const acct = await createAccount(db.pool, 'Thirds');
    await record([
      ev(acct, '2026-05-05T01:00:00Z', { provider: 'a', model: 'm1' }),
      ev(acct, '2026-05-05T02:00:00Z', { provider: 'a', model: 'm1' }),
      ev(acct, '2026-05-05T03:00:00Z', { provider: 'b', model: 'm1' }),
      ev(acct, '2026-05-05T04:00:00Z', { provider: 'b', model: 'm1' }),
      ev(acct, '2026-05-05T05:00:00Z', { provider: 'c', model: 'm2' }),
      ev(acct, '2026-05-05T06:00:00Z', { provider: 'c', model: 'm3' }),
    ]);
    await twice(acct, async () => {
      // rounded one by one: 99.99 and 100.01
      expect(ranking(await breakdown(db.pool, acct, 'provider', '2026-05-05', '2026-05-05', {}, { raw: true }))).toEqual([
        [1, 'a', 'a', false, '33.34', 2],
        [2, 'b', 'b', false, '33.33', 2],
        [3, 'c', 'c', false, '33.33', 2],
      ]);
      expect(ranking(await breakdown(db.pool, acct, 'model', '2026-05-05', '2026-05-05', {}, { raw: true }))).toEqual([
        [1, 'm1', 'm1', false, '66.67', 4],
        [2, 'm2', 'm2', false, '16.67', 1],
        [3, 'm3', 'm3', false, '16.66', 1],
      ]);
      // a total of 0 (no costs): every share 0.00
      expect(ranking(await breakdown(db.pool, acct, 'provider', '2026-05-05', '2026-05-05', { measure: 'cost' }, { raw: true }))).toEqual([
        [1, 'a', 'a', false, '0.00', 2],
        [2, 'b', 'b', false, '0.00', 2],
        [3, 'c', 'c', false, '0.00', 2],
      ]);
    });
  });

  it('api_key rows are labelled with the key name; status_class rows by class; bytes and tokens measures', async () => {
    const acct = await createAccount(db.pool, 'Keys');
    const production = (await createApiKey(db.pool, acct, 'production')).id;
    const staging = (await createApiKey(db.pool, acct, 'staging')).id;
    await record([
      { api_key_id: production, event_type: 'api_request', occurred_at: '2026-05-05T01:00:00Z', status_code: 200, bytes: 100 },
      { api_key_id: production, event_type: 'api_request', occurred_at: '2026-05-05T02:00:00Z', status_code: 201, bytes: 300 },
      { api_key_id: staging, event_type: 'llm_call', occurred_at: '2026-05-05T03:00:00Z', status_code: 404, tokens_in: 10, tokens_out: 5, cost_usd: '0' },
      ev(acct, '2026-05-05T04:00:00Z', { status_code: 503 }),
      ev(acct, '2026-05-05T05:00:00Z'),
    ]);
    await twice(acct, async () => {
      expect(ranking(await breakdown(db.pool, acct, 'api_key', '2026-05-05', '2026-05-05', {}, { raw: true }))).toEqual([
        [1, production, 'production', false, '40.00', 2],
        [2, null, '(none)', false, '40.00', 2],
        [3, staging, 'staging', false, '20.00', 1],
      ]);
      const classes = await breakdown(db.pool, acct, 'status_class', '2026-05-05', '2026-05-05', {}, { raw: true });
      expect(ranking(classes)).toEqual([
        [1, '2xx', '2xx', false, '40.00', 2],
        [2, '4xx', '4xx', false, '20.00', 1],
        [3, '5xx', '5xx', false, '20.00', 1],
        [4, null, '(none)', false, '20.00', 1],
      ]);
      expect(classes.map((r) => [r.value, r.successful, r.failed])).toEqual([['2xx', 2, 0], ['4xx', 0, 1], ['5xx', 0, 1], [null, 1, 0]]);
      expect(ranking(await breakdown(db.pool, acct, 'api_key', '2026-05-05', '2026-05-05', { measure: 'bytes' }, { raw: true }))).toEqual([
        [1, production, 'production', false, '100.00', 2],
        [2, staging, 'staging', false, '0.00', 1],
        [3, null, '(none)', false, '0.00', 2],
      ]);
      expect(ranking(await breakdown(db.pool, acct, 'api_key', '2026-05-05', '2026-05-05', { measure: 'tokens' }, { raw: true }))).toEqual([
        [1, staging, 'staging', false, '100.00', 1],
        [2, production, 'production', false, '0.00', 2],
        [3, null, '(none)', false, '0.00', 2],
      ]);
      // filtered by key: the key filter matches api_key_id
      expect(ranking(await breakdown(db.pool, acct, 'event_type', '2026-05-05', '2026-05-05', { filters: { apiKeyIds: [staging] } }, { raw: true }))).toEqual([
        [1, 'llm_call', 'llm_call', false, '100.00', 1],
      ]);
      // the status class is kept apart from the filterable dimensions: no filter with it
      for (const filters of [{ apiKeyIds: [production] }, { eventTypes: ['x'] }, { providers: ['x'] }, { models: ['x'] }, { endpoints: ['x'] }, { fileTypes: ['x'] }]) {
        await expect(breakdown(db.pool, acct, 'status_class', '2026-05-05', '2026-05-05', { filters }), JSON.stringify(filters)).rejects.toMatchObject({
          code: '22023',
          hint: 'invalid_parameter',
          message: expect.stringMatching(/status_class/),
        });
      }
    });
  });

  it('days are the account\'s local days (Asia/Kolkata)', async () => {
    const ist = await createAccount(db.pool, 'IST breakdown', null, 'Asia/Kolkata');
    await record([
      ev(ist, '2026-04-09T18:29:00Z', { provider: 'before' }), // Apr 9 23:59
      ev(ist, '2026-04-09T18:31:00Z', { provider: 'after' }), // Apr 10 00:01
      ev(ist, '2026-04-10T18:29:59Z', { provider: 'after' }), // Apr 10 23:59:59
      ev(ist, '2026-04-10T18:30:00Z', { provider: 'next' }), // Apr 11 00:00
    ]);
    await twice(ist, async () => {
      expect(ranking(await breakdown(db.pool, ist, 'provider', '2026-04-10', '2026-04-10', {}, { raw: true }))).toEqual([[1, 'after', 'after', false, '100.00', 2]]);
    });
  });
});

describe('get_top_endpoints', () => {
  it('ranks endpoints by requests or cost against the previous period of as many days (rank, rank_change, change %)', async () => {
    const acct = await createAccount(db.pool, 'Endpoints');
    const n = (count: number, at: string, fields: Fields) => Array.from({ length: count }, () => ev(acct, at, fields));
    await record([
      // before the previous period (May 4-10): would rank first there if it were counted
      ...n(20, '2026-05-03T23:59:59Z', { endpoint: '/d' }),
      // the previous period
      ...n(1, '2026-05-04T00:00:00Z', { endpoint: '/d', cost_usd: '0' }),
      ...n(9, '2026-05-06T12:00:00Z', { endpoint: '/a', cost_usd: '0.1', latency_ms: 10 }),
      ...n(1, '2026-05-10T23:59:59Z', { endpoint: '/a', cost_usd: '0.1', latency_ms: 10 }),
      ...n(8, '2026-05-07T12:00:00Z', { endpoint: '/c', cost_usd: '0.5' }),
      ...n(5, '2026-05-08T12:00:00Z', { endpoint: '/b', cost_usd: '2' }),
      // the current period (May 11-17)
      ...n(1, '2026-05-11T00:00:00Z', { endpoint: '/b', cost_usd: '0.01', latency_ms: 100, status_code: 500 }),
      ...n(2, '2026-05-12T12:00:00Z', { endpoint: '/b', cost_usd: '0.01', latency_ms: 100, status_code: 500 }),
      ...n(6, '2026-05-12T13:00:00Z', { endpoint: '/b', cost_usd: '0.01', latency_ms: 100, status_code: 200 }),
      ...n(7, '2026-05-13T12:00:00Z', { endpoint: '/a', cost_usd: '0.1', latency_ms: 10 }),
      ...n(4, '2026-05-17T23:59:59Z', { endpoint: '/c', cost_usd: '0.5' }),
      ...n(4, '2026-05-14T12:00:00Z', { endpoint: '/e', cost_usd: '0' }),
      ...n(3, '2026-05-15T12:00:00Z', {}), // no endpoint: not ranked
      // after it
      ...n(20, '2026-05-18T00:00:00Z', { endpoint: '/e' }),
    ]);
    const row = (rank: number, endpoint: string, rest: Row) => ({ rank, endpoint, ...rest });
    const b = row(1, '/b', { requests: 9, successful: 6, failed: 3, error_pct: '33.33', cost_usd: '0.09', avg_latency_ms: '100', p95_latency_ms: '100', previous_rank: 3, rank_change: 2, previous_requests: 5, previous_cost_usd: '10', requests_change_pct: '80' });
    const a = row(2, '/a', { requests: 7, successful: 7, failed: 0, error_pct: '0', cost_usd: '0.7', avg_latency_ms: '10', p95_latency_ms: '10', previous_rank: 1, rank_change: -1, previous_requests: 10, previous_cost_usd: '1', requests_change_pct: '-30' });
    const c = row(3, '/c', { requests: 4, successful: 4, failed: 0, error_pct: '0', cost_usd: '2', avg_latency_ms: null, p95_latency_ms: null, previous_rank: 2, rank_change: -1, previous_requests: 8, previous_cost_usd: '4', requests_change_pct: '-50' });
    // a tie with /c (4 requests) goes by endpoint; new: no previous rank, no change %
    const e = row(4, '/e', { requests: 4, successful: 4, failed: 0, error_pct: '0', cost_usd: '0', avg_latency_ms: null, p95_latency_ms: null, previous_rank: null, rank_change: null, previous_requests: 0, previous_cost_usd: '0', requests_change_pct: null });
    await twice(acct, async () => {
      expect(await topEndpoints(db.pool, acct, '2026-05-11', '2026-05-17')).toEqual([b, a, c, e]);
      // the limit cuts the list, not the previous ranking
      expect(await topEndpoints(db.pool, acct, '2026-05-11', '2026-05-17', { limit: 2 })).toEqual([b, a]);
      // by cost: now /c 2, /a 0.7, /b 0.09, /e 0; before /b 10, /c 4, /a 1, /d 0
      expect(await topEndpoints(db.pool, acct, '2026-05-11', '2026-05-17', { orderBy: 'cost' })).toEqual([
        { ...c, rank: 1, previous_rank: 2, rank_change: 1 },
        { ...a, rank: 2, previous_rank: 3, rank_change: 1 },
        { ...b, rank: 3, previous_rank: 1, rank_change: -2 },
        { ...e, rank: 4 },
      ]);
      // a filter applies to both periods
      expect(await topEndpoints(db.pool, acct, '2026-05-11', '2026-05-17', { filters: { endpoints: ['/a', '/e'] } })).toEqual([
        { ...a, rank: 1, previous_rank: 1, rank_change: 0 },
        { ...e, rank: 2 },
      ]);
      // one day against the day before: May 11 (one /b) against May 10 (one /a)
      expect(await topEndpoints(db.pool, acct, '2026-05-11', '2026-05-11')).toEqual([
        { rank: 1, endpoint: '/b', requests: 1, successful: 0, failed: 1, error_pct: '100', cost_usd: '0.01', avg_latency_ms: '100', p95_latency_ms: '100', previous_rank: null, rank_change: null, previous_requests: 0, previous_cost_usd: '0', requests_change_pct: null },
      ]);
    });
  });
});

/** compare_periods' ranges and one metric's [current, previous, change, change_pct]. */
async function compared(account: string, period: string, at: string, metric = 'requests', filters = {}) {
  const rows = await comparePeriods(db.pool, account, period, at, filters);
  expect(rows.map((r) => r.metric)).toEqual([...METRIC_COLUMNS]);
  const first = rows[0]!;
  for (const r of rows) {
    expect([r.current_from, r.current_to, r.previous_from, r.previous_to]).toEqual([first.current_from, first.current_to, first.previous_from, first.previous_to]);
  }
  return {
    ranges: [first.current_from, first.current_to, first.previous_from, first.previous_to],
    [metric]: comparison(rows)[metric],
  };
}
const instants = (...iso: string[]) => iso.map((s) => new Date(s).toISOString());

describe('compare_periods', () => {
  it('day (UTC): [today 00:00, p_at) against [yesterday 00:00, the same elapsed time), edges exact to the microsecond', async () => {
    const acct = await createAccount(db.pool, 'Compare day');
    await record([
      ev(acct, '2026-06-08T23:59:59.999999Z', { cost_usd: '9' }), // the day before yesterday
      ev(acct, '2026-06-09T00:00:00Z', { cost_usd: '0.4' }), // previous: its start is included
      ev(acct, '2026-06-09T15:45:29.999999Z', { cost_usd: '0.1' }), // previous: the last microsecond
      ev(acct, '2026-06-09T15:45:30Z', { cost_usd: '9' }), // previous end: excluded
      ev(acct, '2026-06-10T00:00:00Z', { cost_usd: '0.5', provider: 'openai' }), // current: its start
      ev(acct, '2026-06-10T12:00:00Z', { cost_usd: '0.25', latency_ms: 20 }), // a whole hour
      ev(acct, '2026-06-10T15:45:29.999999Z', { cost_usd: '0.25', latency_ms: 40 }), // the piece of an hour
      ev(acct, '2026-06-10T15:45:30Z', { cost_usd: '9' }), // p_at itself: excluded
    ]);
    const at = '2026-06-10T15:45:30Z';
    const ranges = instants('2026-06-10T00:00:00Z', at, '2026-06-09T00:00:00Z', '2026-06-09T15:45:30Z');
    await twice(acct, async () => {
      expect(await compared(acct, 'day', at)).toEqual({ ranges, requests: ['3', '2', '1', '50'] });
      expect(await compared(acct, 'day', at, 'cost_usd')).toEqual({ ranges, cost_usd: ['1', '0.5', '0.5', '100'] });
      // latencies 20 and 40 now, none before: change NULL
      expect(await compared(acct, 'day', at, 'avg_latency_ms')).toEqual({ ranges, avg_latency_ms: ['30', null, null, null] });
      expect(await compared(acct, 'day', at, 'p50_latency_ms')).toEqual({ ranges, p50_latency_ms: ['18.53', null, null, null] });
      // a previous value of 0: no change %
      expect(await compared(acct, 'day', at, 'failed')).toEqual({ ranges, failed: ['0', '0', '0', null] });
      expect(await compared(acct, 'day', at, 'requests', { providers: ['openai'] })).toEqual({ ranges, requests: ['1', '0', '1', null] });
    });
  });

  it('day in Asia/Kolkata: periods start at 18:30 UTC, the sub-hour pieces at both edges are exact', async () => {
    const ist = await createAccount(db.pool, 'Compare IST day', null, 'Asia/Kolkata');
    await record([
      ev(ist, '2026-06-08T18:29:59Z'), // Jun 8 23:59:59: before the previous day
      ev(ist, '2026-06-08T18:30:00Z'), // Jun 9 00:00: previous
      ev(ist, '2026-06-08T18:45:00Z'), // previous, in the piece of hour before 19:00Z
      ev(ist, '2026-06-09T03:00:00Z'), // previous
      ev(ist, '2026-06-09T10:19:59.999999Z'), // previous, its last microsecond
      ev(ist, '2026-06-09T10:20:00Z'), // the previous end: excluded
      ev(ist, '2026-06-09T18:29:59.999999Z'), // Jun 9 23:59:59.999999: in neither
      ev(ist, '2026-06-09T18:30:00Z'), // Jun 10 00:00: current
      ev(ist, '2026-06-09T18:59:59Z'), // current, piece of hour
      ev(ist, '2026-06-10T05:00:00Z'), // current, whole hour
      ev(ist, '2026-06-10T10:00:00Z'), // current, piece of hour at the end
      ev(ist, '2026-06-10T10:19:59.999999Z'), // current, its last microsecond
      ev(ist, '2026-06-10T10:20:00Z'), // p_at: excluded
    ]);
    await twice(ist, async () => {
      // p_at is 15:50 on Jun 10: 15 h 50 min of each day
      expect(await compared(ist, 'day', '2026-06-10T10:20:00Z')).toEqual({
        ranges: instants('2026-06-09T18:30:00Z', '2026-06-10T10:20:00Z', '2026-06-08T18:30:00Z', '2026-06-09T10:20:00Z'),
        requests: ['5', '4', '1', '25'],
      });
    });
  });

  it('month in Asia/Kolkata: whole local days, whole UTC hours and the pieces, against the same elapsed time of the month before', async () => {
    const ist = await createAccount(db.pool, 'Compare IST month', null, 'Asia/Kolkata');
    await record([
      ev(ist, '2026-04-30T18:29:59.999999Z'), // Apr 30, 23:59:59.999999
      ev(ist, '2026-04-30T18:30:00Z'), // May 1 00:00: previous
      ev(ist, '2026-05-05T12:00:00Z'), // previous
      ev(ist, '2026-05-10T10:19:59.999999Z'), // previous, the last microsecond
      ev(ist, '2026-05-10T10:20:00Z'), // the previous end
      ev(ist, '2026-05-31T18:29:59.999999Z'), // May 31, after the previous span
      ev(ist, '2026-05-31T18:30:00Z'), // Jun 1 00:00: current
      ev(ist, '2026-06-10T10:19:59.999999Z'), // current
      ev(ist, '2026-06-10T10:20:00Z'), // p_at
    ]);
    await twice(ist, async () => {
      // 9 days 15 h 50 min after each month's start
      expect(await compared(ist, 'month', '2026-06-10T10:20:00Z')).toEqual({
        ranges: instants('2026-05-31T18:30:00Z', '2026-06-10T10:20:00Z', '2026-04-30T18:30:00Z', '2026-05-10T10:20:00Z'),
        requests: ['2', '3', '-1', '-33.33'],
      });
    });
  });

  it('week in New York: from Monday 00:00 local; the previous week over the same elapsed time', async () => {
    const ny = await createAccount(db.pool, 'Compare NY week', null, 'America/New_York');
    await record([
      ev(ny, '2026-03-02T04:59:59Z'), // Sun Mar 1 23:59:59 EST
      ev(ny, '2026-03-02T05:00:00Z'), // Mon Mar 2 00:00 EST: previous
      ev(ny, '2026-03-04T12:59:59.999999Z'), // previous, its last microsecond
      ev(ny, '2026-03-04T13:00:00Z'), // previous end (Wed 08:00 EST)
      ev(ny, '2026-03-08T12:00:00Z'), // later in the previous week
      ev(ny, '2026-03-09T04:00:00Z'), // Mon Mar 9 00:00 EDT: current
      ev(ny, '2026-03-10T12:00:00Z'),
      ev(ny, '2026-03-11T11:59:59Z'),
      ev(ny, '2026-03-11T12:00:00Z'), // p_at (Wed 08:00 EDT)
    ]);
    await twice(ny, async () => {
      expect(await compared(ny, 'week', '2026-03-11T12:00:00Z')).toEqual({
        ranges: instants('2026-03-09T04:00:00Z', '2026-03-11T12:00:00Z', '2026-03-02T05:00:00Z', '2026-03-04T13:00:00Z'),
        requests: ['3', '2', '1', '50'],
      });
    });
  });

  it('the same elapsed span is elapsed time: 12 hours into the day after spring-forward reach 13:00 EDT the day before', async () => {
    const ny = await createAccount(db.pool, 'Compare NY DST day', null, 'America/New_York');
    await record([
      ev(ny, '2026-03-08T16:30:00Z'), // 12:30 EDT on Mar 8: within 12 elapsed hours of 00:00 EST
      ev(ny, '2026-03-08T17:00:00Z'), // 13:00 EDT: the previous end
      ev(ny, '2026-03-09T15:59:59Z'), // 11:59:59 EDT on Mar 9
    ]);
    await twice(ny, async () => {
      expect(await compared(ny, 'day', '2026-03-09T16:00:00Z')).toEqual({
        ranges: instants('2026-03-09T04:00:00Z', '2026-03-09T16:00:00Z', '2026-03-08T05:00:00Z', '2026-03-08T17:00:00Z'),
        requests: ['1', '1', '0', '0'],
      });
    });
  });

  it('month in New York (the contract\'s example): Nov 1 00:00 to Nov 15 10:30 against Oct 1 00:00 to the same elapsed time', async () => {
    const ny = await createAccount(db.pool, 'Compare NY month', null, 'America/New_York');
    await record([
      ev(ny, '2026-10-01T03:59:59Z'), // Sep 30
      ev(ny, '2026-10-01T04:00:00Z'), // Oct 1 00:00 EDT: previous
      ev(ny, '2026-10-15T15:29:59Z'), // previous
      ev(ny, '2026-10-15T15:30:00Z'), // previous end: 14 days 11 h 30 min later (11:30 EDT: November has a 25-hour day)
      ev(ny, '2026-11-01T04:00:00Z'), // Nov 1 00:00 EDT: current
      ev(ny, '2026-11-10T12:00:00Z'),
      ev(ny, '2026-11-15T15:29:59.999999Z'),
      ev(ny, '2026-11-15T15:30:00Z'), // p_at (10:30 EST)
    ]);
    await twice(ny, async () => {
      expect(await compared(ny, 'month', '2026-11-15T15:30:00Z')).toEqual({
        ranges: instants('2026-11-01T04:00:00Z', '2026-11-15T15:30:00Z', '2026-10-01T04:00:00Z', '2026-10-15T15:30:00Z'),
        requests: ['3', '2', '1', '50'],
      });
    });
  });

  it('the previous end is capped at the current start (Mar 31 against February)', async () => {
    const acct = await createAccount(db.pool, 'Compare capped');
    await record([
      ev(acct, '2026-02-01T00:00:00Z'),
      ev(acct, '2026-02-28T23:59:59.999999Z'),
      ev(acct, '2026-03-01T00:00:00Z'),
      ev(acct, '2026-03-31T09:59:59Z'),
      ev(acct, '2026-03-31T10:00:00Z'),
    ]);
    await twice(acct, async () => {
      expect(await compared(acct, 'month', '2026-03-31T10:00:00Z')).toEqual({
        ranges: instants('2026-03-01T00:00:00Z', '2026-03-31T10:00:00Z', '2026-02-01T00:00:00Z', '2026-03-01T00:00:00Z'),
        requests: ['2', '2', '0', '0'],
      });
    });
  });

  it('the answer does not depend on the session\'s TimeZone setting', async () => {
    const acct = await createAccount(db.pool, 'Compare session zone');
    await record([ev(acct, '2026-03-15T11:30:00Z')]);
    // Apr 1 00:00 to Apr 15 12:00 UTC against Mar 1 00:00 to Mar 15 12:00 UTC (March holds New York's DST change)
    const expected = {
      ranges: instants('2026-04-01T00:00:00Z', '2026-04-15T12:00:00Z', '2026-03-01T00:00:00Z', '2026-03-15T12:00:00Z'),
      requests: ['0', '1', '-1', '-100'],
    };
    const client = await db.pool.connect();
    try {
      for (const zone of ['UTC', 'America/New_York', 'Asia/Kolkata', 'Pacific/Kiritimati']) {
        await client.query(`set timezone = '${zone}'`);
        const rows = await comparePeriods(client, acct, 'month', '2026-04-15T12:00:00Z');
        const first = rows[0]!;
        expect({ ranges: [first.current_from, first.current_to, first.previous_from, first.previous_to], requests: comparison(rows).requests }, zone).toEqual(expected);
      }
    } finally {
      await client.query('reset timezone');
      client.release();
    }
  });

  it('defaults: the month holding now()', async () => {
    const acct = await createAccount(db.pool, 'Compare defaults', null, 'Asia/Kolkata');
    await record([ev(acct, undefined)]);
    const client = await db.pool.connect();
    try {
      await client.query('begin');
      const now = new Date((await client.query('select now() as now')).rows[0].now);
      const rows = await comparePeriods(client, acct);
      // the first instant of the local month: the 1st at 00:00 in Kolkata is 18:30 UTC the day before
      const local = new Date(now.getTime() + 5.5 * 3_600_000);
      const monthStart = new Date(Date.UTC(local.getUTCFullYear(), local.getUTCMonth(), 1) - 5.5 * 3_600_000);
      expect([rows[0]!.current_from, rows[0]!.current_to]).toEqual([monthStart.toISOString(), now.toISOString()]);
      expect(comparison(rows).requests![0]).toBe('1');
      await client.query('commit');
    } finally {
      client.release();
    }
  });
});


/** The local calendar date of an instant in a zone ('YYYY-MM-DD'), by Intl. */
function localDate(instant: Date, timeZone: string): string {
  const parts = new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' }).formatToParts(instant);
  const part = (type: string) => parts.find((p) => p.type === type)!.value;
  return `${part('year')}-${part('month')}-${part('day')}`;
}
/** A date 'YYYY-MM-DD' moved by whole months (day 1) or days. */
function addMonths(date: string, months: number): string {
  const [y, m] = date.split('-').map(Number) as [number, number];
  const d = new Date(Date.UTC(y, m - 1 + months, 1));
  return d.toISOString().slice(0, 10);
}
const addDays = (date: string, days: number) => new Date(Date.parse(`${date}T00:00:00Z`) + days * 86_400_000).toISOString().slice(0, 10);
/** Kolkata is UTC+05:30 all year: the instant of a local midnight. */
const kolkataMidnight = (date: string) => new Date(Date.parse(`${date}T00:00:00Z`) - 5.5 * 3_600_000).toISOString();

/** Seconds as printed by extract(epoch ...) ('1234.5678') in microseconds. */
function micros(epoch: string): bigint {
  const [s, f = ''] = epoch.split('.');
  return BigInt(s!) * 1_000_000n + BigInt((f + '000000').slice(0, 6));
}
/** A decimal string in units of 10^-scale. */
function units(decimal: string, scale: number): bigint {
  const [i, f = ''] = decimal.split('.');
  return BigInt(i!) * 10n ** BigInt(scale) + BigInt((f + '0'.repeat(scale)).slice(0, scale));
}
/** n / d rounded half up (n, d >= 0). */
const roundDiv = (n: bigint, d: bigint) => (2n * n + d) / (2n * d);

describe('get_period_summary', () => {
  it('a finished month: every event of the local month, savings_pct, and its forecast is its total (actual)', async () => {
    const ny = await createAccount(db.pool, 'Summary', null, 'America/New_York');
    await record([
      ev(ny, '2026-04-01T03:59:59Z', { cost_usd: '5' }), // Mar 31 23:59:59 EDT
      ev(ny, '2026-04-01T04:00:00Z', { cost_usd: '0.5', potential_cost_usd: '1', latency_ms: 100 }), // Apr 1 00:00 EDT
      ev(ny, '2026-05-01T03:59:59Z', { cost_usd: '0.25', latency_ms: 300 }), // Apr 30 23:59:59 EDT (potential = cost)
      ev(ny, '2026-05-01T04:00:00Z', { cost_usd: '5' }), // May 1
    ]);
    const april = {
      month: '2026-04-01', period_start: '2026-04-01T04:00:00.000Z', period_end: '2026-05-01T04:00:00.000Z', as_of: '2026-05-01T04:00:00.000Z', elapsed_pct: '100',
      ...M({
        requests: 2, successful: 2, cost_usd: '0.75', potential_cost_usd: '1.25', savings_usd: '0.5', quantity: '2',
        avg_latency_ms: '200', p50_latency_ms: '106.03', p95_latency_ms: '300', p99_latency_ms: '300',
      }),
      savings_pct: '40', forecast_requests: 2, forecast_cost_usd: '0.75', forecast_method: 'actual',
    };
    await twice(ny, async () => {
      for (const day of ['2026-04-01', '2026-04-17', '2026-04-30']) expect(await periodSummary(db.pool, ny, day), day).toEqual([april]);
      // a month without events: zeros, savings_pct 0, forecast 0
      expect(await periodSummary(db.pool, ny, '2026-02-10')).toEqual([{
        month: '2026-02-01', period_start: '2026-02-01T05:00:00.000Z', period_end: '2026-03-01T05:00:00.000Z', as_of: '2026-03-01T05:00:00.000Z',
        elapsed_pct: '100', ...EMPTY, savings_pct: '0', forecast_requests: 0, forecast_cost_usd: '0', forecast_method: 'actual',
      }]);
    });
  });

  it('the current month: forecast = total x (period_end - period_start) / (as_of - period_start), as_of = now()', async () => {
    const ny = await createAccount(db.pool, 'Forecast', null, 'America/New_York');
    await record([ev(ny, undefined, { cost_usd: '0.3' }), ev(ny, undefined, { cost_usd: '0.1' }), ev(ny, undefined, { cost_usd: '0.000000000007' })]);
    const month = `${localDate(new Date(), 'America/New_York').slice(0, 7)}-01`;
    await twice(ny, async () => {
      const { rows } = await db.pool.query(
        `select s.month::text, s.requests::int, s.cost_usd::text, s.forecast_requests::text, s.forecast_cost_usd::text, s.elapsed_pct::text,
                s.forecast_method, s.as_of = now() as as_of_now, s.period_end > now() as open,
                extract(epoch from s.as_of - s.period_start)::text as elapsed, extract(epoch from s.period_end - s.period_start)::text as length
         from tally.get_period_summary(p_account_id => $1::uuid) s`,
        [ny],
      );
      const s = rows[0];
      expect(s).toMatchObject({ month, requests: 3, cost_usd: '0.400000000007', forecast_method: 'month_to_date_run_rate', as_of_now: true, open: true });
      const elapsed = micros(s.elapsed);
      const length = micros(s.length);
      expect(BigInt(s.forecast_requests)).toBe(roundDiv(3n * length, elapsed));
      expect(units(s.forecast_cost_usd, 12)).toBe(roundDiv(units('0.400000000007', 12) * length, elapsed));
      expect(units(s.elapsed_pct, 2)).toBe(roundDiv(10_000n * elapsed, length));
      // the month is under way: the forecast is above the total
      expect(BigInt(s.forecast_requests)).toBeGreaterThanOrEqual(3n);
    });
  });

  it('refuses a month that has not started (invalid_parameter)', async () => {
    const ny = await createAccount(db.pool, 'Not yet', null, 'America/New_York');
    const next = addMonths(localDate(new Date(), 'America/New_York'), 1);
    await expect(periodSummary(db.pool, ny, next)).rejects.toMatchObject({ code: '22023', hint: 'invalid_parameter', message: expect.stringMatching(/month/) });
    // the last day of the current month is in the current month
    const last = addDays(next, -1);
    expect((await periodSummary(db.pool, ny, last))[0]).toMatchObject({ month: `${last.slice(0, 7)}-01`, forecast_method: 'month_to_date_run_rate' });
  });
});

describe('get_usage_history', () => {
  it('the last p_months local months, the current one included, oldest first, gap-filled', async () => {
    const ist = await createAccount(db.pool, 'History', null, 'Asia/Kolkata');
    const thisMonth = `${localDate(new Date(), 'Asia/Kolkata').slice(0, 7)}-01`;
    const start = kolkataMidnight(thisMonth); // the current month's first instant, 18:30 UTC the day before
    const twoAgo = addMonths(thisMonth, -2);
    await record([
      ev(ist, `${twoAgo.slice(0, 7)}-15T12:00:00Z`, { latency_ms: 10 }),
      ev(ist, `${twoAgo.slice(0, 7)}-15T13:00:00Z`, { latency_ms: 20 }),
      ev(ist, new Date(Date.parse(start) - 1).toISOString()), // the last millisecond of last month
      ev(ist, start),
    ]);
    const one = M({ requests: 1, successful: 1, quantity: '1' });
    await twice(ist, async () => {
      expect(await usageHistory(db.pool, ist, 4)).toEqual([
        { month: addMonths(thisMonth, -3), ...EMPTY },
        // rank 1 of 2 is 10 ms, slot [8, 10]: 2 * 8 * 10 / 18 = 8.888..
        { month: twoAgo, ...M({ requests: 2, successful: 2, quantity: '2', avg_latency_ms: '15', p50_latency_ms: '8.89', p95_latency_ms: '20', p99_latency_ms: '20' }) },
        { month: addMonths(thisMonth, -1), ...one },
        { month: thisMonth, ...one },
      ]);
      expect(await usageHistory(db.pool, ist, 1)).toEqual([{ month: thisMonth, ...one }]);
      const year = await usageHistory(db.pool, ist); // default: 12
      expect(year.map((r) => r.month)).toEqual(Array.from({ length: 12 }, (_, i) => addMonths(thisMonth, i - 11)));
      expect(year.map((r) => r.requests)).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 1]);
    });
  });
});

describe('get_dashboard_stats', () => {
  it('the last p_days local days, today included, gap-filled, with requests by provider and model', async () => {
    const ist = await createAccount(db.pool, 'Dashboard', null, 'Asia/Kolkata');
    const today = localDate(new Date(), 'Asia/Kolkata');
    const midnight = kolkataMidnight(today);
    await record([
      ev(ist, undefined, { provider: 'openai', model: 'gpt', latency_ms: 5 }),
      ev(ist, undefined, { provider: 'anthropic', model: 'claude' }),
      ev(ist, undefined, {}),
      ev(ist, midnight, { provider: 'mistral' }), // today's first instant
      ev(ist, new Date(Date.parse(midnight) - 1000).toISOString(), { provider: 'openai', model: 'gpt' }), // yesterday 23:59:59
    ]);
    await twice(ist, async () => {
      expect(await dashboardStats(db.pool, ist, 3)).toEqual([
        { day: addDays(today, -2), ...EMPTY, requests_by_provider: {}, requests_by_model: {} },
        { day: addDays(today, -1), ...M({ requests: 1, successful: 1, quantity: '1' }), requests_by_provider: { openai: 1 }, requests_by_model: { gpt: 1 } },
        {
          day: today,
          ...M({ requests: 4, successful: 4, quantity: '4', avg_latency_ms: '5', p50_latency_ms: '5', p95_latency_ms: '5', p99_latency_ms: '5' }),
          requests_by_provider: { openai: 1, anthropic: 1, mistral: 1 },
          requests_by_model: { gpt: 1, claude: 1 },
        },
      ]);
      const month = await dashboardStats(db.pool, ist); // default: 30 days
      expect(month.map((r) => r.day)).toEqual(Array.from({ length: 30 }, (_, i) => addDays(today, i - 29)));
      expect(month.slice(-2).map((r) => r.requests)).toEqual([1, 4]);
      expect(await dashboardStats(db.pool, ist, 1)).toHaveLength(1);
    });
  });
});

describe('late and unfolded events', () => {
  it('an event with an old occurred_at, recorded after its bucket was folded, lands in that bucket before and after the next run', async () => {
    const acct = await createAccount(db.pool, 'Late');
    await record([ev(acct, '2026-07-10T12:00:00Z', { provider: 'p', endpoint: '/x' })]);
    await drain(db.pool);
    await record([ev(acct, '2026-07-10T13:00:00Z', { provider: 'p', endpoint: '/x' })]);
    const check = async () => {
      expect((await usageSeries(db.pool, acct, '2026-07-09T00:00:00Z', '2026-07-12T00:00:00Z')).map((r) => r.requests)).toEqual([0, 2, 0]);
      expect((await usageSeries(db.pool, acct, '2026-07-10T12:00:00Z', '2026-07-10T14:00:00Z', 'hour')).map((r) => r.requests)).toEqual([1, 1]);
      expect(ranking(await breakdown(db.pool, acct, 'provider', '2026-07-10', '2026-07-10', {}, { raw: true }))).toEqual([[1, 'p', 'p', false, '100.00', 2]]);
      expect((await topEndpoints(db.pool, acct, '2026-07-10', '2026-07-10'))[0]).toMatchObject({ endpoint: '/x', requests: 2 });
      expect(comparison(await comparePeriods(db.pool, acct, 'day', '2026-07-10T23:00:00Z')).requests).toEqual(['2', '0', '2', null]);
      expect((await periodSummary(db.pool, acct, '2026-07-01'))[0]).toMatchObject({ requests: 2, forecast_requests: 2 });
    };
    await twice(acct, check);
    const { rows } = await db.pool.query(
      `select (select sum(requests)::int from tally.usage_daily where account_id = $1 and bucket = '2026-07-10') as daily,
              (select sum(requests)::int from tally.usage_daily_by_dimension where account_id = $1 and bucket = '2026-07-10' and dimension = 'provider') as by_provider,
              (select sum(requests)::int from tally.usage_monthly_by_dimension where account_id = $1 and bucket = '2026-07-01' and dimension = 'endpoint') as monthly_by_endpoint`,
      [acct],
    );
    expect(rows[0]).toEqual({ daily: 2, by_provider: 2, monthly_by_endpoint: 2 });
  });

  it('an event recorded and not rolled up yet shows in every function, with the same answers after run_rollups', async () => {
    const acct = await createAccount(db.pool, 'Fresh');
    await drain(db.pool);
    await record([
      ev(acct, '2026-07-20T10:00:00Z', { provider: 'p', endpoint: '/x', cost_usd: '0.5' }),
      ev(acct, undefined, { provider: 'p', endpoint: '/y', cost_usd: '0.25' }),
    ]);
    const today = localDate(new Date(), 'UTC');
    const answers = async () => ({
      series: (await usageSeries(db.pool, acct, '2026-07-20T00:00:00Z', '2026-07-21T00:00:00Z')).map((r) => [r.requests, r.cost_usd]),
      breakdown: ranking(await breakdown(db.pool, acct, 'provider', '2026-07-20', '2026-07-20', {}, { raw: true })),
      top: (await topEndpoints(db.pool, acct, '2026-07-20', '2026-07-20')).map((r) => [r.endpoint, r.requests, r.cost_usd]),
      compare: comparison(await comparePeriods(db.pool, acct, 'day', '2026-07-20T12:00:00Z')).requests,
      summary: (await periodSummary(db.pool, acct, '2026-07-01')).map((r) => [r.requests, r.cost_usd, r.forecast_method]),
      history: (await usageHistory(db.pool, acct, 1)).map((r) => [r.requests, r.cost_usd]),
      dashboard: (await dashboardStats(db.pool, acct, 1)).map((r) => [r.day, r.requests, r.requests_by_provider]),
    });
    expect(await unfolded(acct)).toBe(2);
    const before = await answers();
    expect(before).toEqual({
      series: [[1, '0.5']],
      breakdown: [[1, 'p', 'p', false, '100.00', 1]],
      top: [['/x', 1, '0.5']],
      compare: ['1', '0', '1', null],
      summary: [[1, '0.5', 'actual']],
      history: [[1, '0.25']],
      dashboard: [[today, 1, { p: 1 }]],
    });
    await drain(db.pool);
    expect(await unfolded(acct)).toBe(0);
    expect(await answers()).toEqual(before);
  });
});

describe("the session's TimeZone", () => {
  it('changes no answer of any function (UTC and New York accounts, events around the DST change)', async () => {
    const utc = await createAccount(db.pool, 'Session UTC');
    const ny = await createAccount(db.pool, 'Session NY', null, 'America/New_York');
    const events = (acct: string) => [
      ev(acct, '2026-03-01T00:00:00Z', { provider: 'a', endpoint: '/x', latency_ms: 5 }),
      ev(acct, '2026-03-07T23:30:00Z', { provider: 'b', endpoint: '/y', cost_usd: '0.5' }),
      ev(acct, '2026-03-08T06:59:59Z', { provider: 'a', endpoint: '/x' }),
      ev(acct, '2026-03-08T07:00:00Z', { provider: 'b', endpoint: '/x', status_code: 404 }),
      ev(acct, '2026-03-15T11:30:00Z', { provider: 'a', endpoint: '/y' }),
      ev(acct, '2026-04-02T12:00:00Z', { provider: 'a', endpoint: '/y' }),
      ev(acct, '2026-04-15T11:59:59Z', { provider: 'b', endpoint: '/x' }),
      ev(acct, undefined, { provider: 'a', endpoint: '/x' }),
    ];
    await record([...events(utc), ...events(ny)]);
    const answers = async (client: pg.PoolClient, acct: string) => ({
      hours: await usageSeries(client, acct, '2026-03-07T20:00:00Z', '2026-03-08T10:00:00Z', 'hour'),
      days: await usageSeries(client, acct, '2026-03-01T00:00:00Z', '2026-03-20T00:00:00Z', 'day'),
      weeks: await usageSeries(client, acct, '2026-02-20T00:00:00Z', '2026-04-20T00:00:00Z', 'week'),
      months: await usageSeries(client, acct, '2026-01-15T00:00:00Z', '2026-05-15T00:00:00Z', 'month'),
      breakdown: await breakdown(client, acct, 'provider', '2026-03-01', '2026-04-30'),
      top: await topEndpoints(client, acct, '2026-03-08', '2026-03-14'),
      compare: await Promise.all(['day', 'week', 'month'].flatMap((p) => ['2026-03-08T12:00:00Z', '2026-04-15T12:00:00Z'].map((at) => comparePeriods(client, acct, p, at)))),
      summary: await periodSummary(client, acct, '2026-03-05'),
      history: await usageHistory(client, acct, 12),
      dashboard: await dashboardStats(client, acct, 5),
    });
    const client = await db.pool.connect();
    try {
      for (const acct of [utc, ny]) {
        await client.query("set timezone = 'UTC'");
        const expected = await answers(client, acct);
        expect(expected.compare[5]!.find((r) => r.metric === 'requests')).toMatchObject({ previous_value: acct === utc ? '5' : '4' });
        for (const zone of ['America/New_York', 'Asia/Kolkata', 'Pacific/Kiritimati', 'Etc/GMT+12', 'Australia/Lord_Howe']) {
          await client.query(`set timezone = '${zone}'`);
          expect(await answers(client, acct), `${acct === utc ? 'UTC' : 'New York'} account, session ${zone}`).toEqual(expected);
        }
      }
    } finally {
      await client.query('reset timezone');
      client.release();
    }
  });
});

describe('a local midnight that happens twice', () => {
  // Atlantic/Azores falls back from 01:00 (+00) to 00:00 (-01) on 2026-10-25, America/Havana
  // from 01:00 (-04) to 00:00 (-05) on 2026-11-01: 00:00 is on the clock twice, and the day
  // starts at the first one (as the rollups cut it: the events between are of that day).
  it('the day, and a period starting that day, start at the first one (Atlantic/Azores, America/Havana)', async () => {
    const azores = await createAccount(db.pool, 'Azores', null, 'Atlantic/Azores');
    const havana = await createAccount(db.pool, 'Havana', null, 'America/Havana');
    await record([
      ev(azores, '2026-10-24T23:59:59Z'), // Oct 24 23:59:59 (+00)
      ev(azores, '2026-10-25T00:30:00Z'), // Oct 25 00:30 (+00), the first 00:30
      ev(azores, '2026-10-25T01:30:00Z'), // Oct 25 00:30 (-01), the second
      ev(havana, '2026-11-01T03:59:59Z'), // Oct 31 23:59:59 (-04)
      ev(havana, '2026-11-01T04:30:00Z'), // Nov 1 00:30 (-04)
      ev(havana, '2026-11-01T05:30:00Z'), // Nov 1 00:30 (-05)
    ]);
    const n = (requests: number) => M({ requests, successful: requests, quantity: String(requests) });
    await twice(havana, async () => {
      expect(await usageSeries(db.pool, azores, '2026-10-24T12:00:00Z', '2026-10-25T12:00:00Z')).toEqual([
        bucket('2026-10-24T00:00:00Z', '2026-10-25T00:00:00Z', '2026-10-24', n(1)),
        bucket('2026-10-25T00:00:00Z', '2026-10-26T01:00:00Z', '2026-10-25', n(2)), // 25 hours
      ]);
      expect(await usageSeries(db.pool, havana, '2026-10-31T12:00:00Z', '2026-11-01T12:00:00Z')).toEqual([
        bucket('2026-10-31T04:00:00Z', '2026-11-01T04:00:00Z', '2026-10-31', n(1)),
        bucket('2026-11-01T04:00:00Z', '2026-11-02T05:00:00Z', '2026-11-01', n(2)),
      ]);
      expect((await usageSeries(db.pool, havana, '2026-11-10T00:00:00Z', '2026-11-11T00:00:00Z', 'month')).map((r) => [r.bucket_start, r.bucket_end, r.requests]))
        .toEqual([['2026-11-01T04:00:00.000Z', '2026-12-01T05:00:00.000Z', 2]]);
      // 00:45 on the first pass through the hour: the day began 45 minutes ago
      expect(await compared(azores, 'day', '2026-10-25T00:45:00Z')).toEqual({
        ranges: instants('2026-10-25T00:00:00Z', '2026-10-25T00:45:00Z', '2026-10-24T00:00:00Z', '2026-10-24T00:45:00Z'),
        requests: ['1', '0', '1', null],
      });
      // December so far (5 hours) against the first 5 hours of November, which began at 04:00Z
      expect(await compared(havana, 'month', '2026-12-01T10:00:00Z')).toEqual({
        ranges: instants('2026-12-01T05:00:00Z', '2026-12-01T10:00:00Z', '2026-11-01T04:00:00Z', '2026-11-01T09:00:00Z'),
        requests: ['0', '2', '-2', '-100'],
      });
      expect((await periodSummary(db.pool, havana, '2026-11-15'))[0]).toMatchObject({
        month: '2026-11-01', period_start: '2026-11-01T04:00:00.000Z', period_end: '2026-12-01T05:00:00.000Z', requests: 2,
      });
    });
  });
});
