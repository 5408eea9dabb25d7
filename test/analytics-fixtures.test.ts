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
