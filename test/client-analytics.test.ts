/**
 * The analytics wrappers of the TypeScript client (usageSeries, breakdown, topEndpoints,
 * comparePeriods, periodSummary, usageHistory, dashboardStats) and tally.asUser, against a
 * real database: rows in camelCase, counts as numbers, money and percentages as exact
 * decimal strings, calendar days as 'YYYY-MM-DD' text, filters given as one value or a
 * list, input refused before any round trip, and a user who sees only their own accounts.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANALYTICS_METRICS } from '../src/client/analytics.ts';
import { asUser, createTally, type Tally } from '../src/client/client.ts';
import { ForbiddenError, InvalidInputError, NotFoundError } from '../src/client/errors.ts';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';
import { createUser } from './helpers/personas.ts';

let db: TestDatabase;
let tally: Tally;
let owner: string;
let stranger: string;
let accountId: string;
let otherAccountId: string;
let tokyoId: string;
let keyId: string;

const DAY_MS = 86_400_000;
const todayUtc = Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate());
/** UTC midnight `k` days ago, plus `hours`. */
const daysAgo = (k: number, hours = 0) => new Date(todayUtc - k * DAY_MS + hours * 3_600_000);
const isoDay = (k: number) => daysAgo(k).toISOString().slice(0, 10);
/** Decimal text without trailing zeros, to compare values whatever their scale. */
const canonical = (v: string | null) => (v === null ? null : v.includes('.') ? v.replace(/0+$/, '').replace(/\.$/, '') : v);
const DECIMAL = /^-?\d+(\.\d+)?$/;

async function drain(): Promise<void> {
  for (;;) {
    const r = await tally.runRollups();
    if (!r.skipped && !r.more) return;
  }
}

beforeAll(async () => {
  db = await migratedDatabase();
  tally = createTally({ pool: db.pool });
  owner = await createUser(db.pool);
  stranger = await createUser(db.pool);
  accountId = (await tally.createAccount({ name: 'Analytics', ownerId: owner })).id;
  otherAccountId = (await tally.createAccount({ name: 'Someone else', ownerId: stranger })).id;
  tokyoId = (await tally.createAccount({ name: 'Tokyo', timezone: 'Asia/Tokyo', ownerId: owner })).id;
  keyId = (await tally.createApiKey({ accountId, name: 'production' })).id;

  // two days ago: two LLM calls (one cached), folded into the rollups
  const folded = await tally.recordEvents([
    { apiKeyId: keyId, occurredAt: daysAgo(2, 10), eventType: 'llm_call', provider: 'openai', model: 'gpt-4o', tokensIn: 1000, tokensOut: 200, costUsd: '0.001000000001', latencyMs: 100 },
    { accountId, occurredAt: daysAgo(2, 11), eventType: 'llm_call', provider: 'anthropic', model: 'claude-sonnet-4', tokensIn: 500, tokensOut: 100, cached: true, costUsd: '0', potentialCostUsd: '0.5', latencyMs: 300 },
    { accountId: otherAccountId, occurredAt: daysAgo(2, 12), eventType: 'api_call', endpoint: '/v1/secret' },
    { accountId: tokyoId, occurredAt: daysAgo(2, 20), eventType: 'api_call', endpoint: '/v1/tokyo' }, // 05:00 the next day in Tokyo
  ]);
  expect(folded).toMatchObject({ accepted: 4, rejected: [] });
  await drain();
  // yesterday: API calls and an upload, left unfolded (the live tail)
  const tail = await tally.recordEvents([
    { accountId, occurredAt: daysAgo(1, 9), eventType: 'api_call', endpoint: '/v1/search', method: 'GET', statusCode: 200, latencyMs: 50 },
    { accountId, occurredAt: daysAgo(1, 10), eventType: 'api_call', endpoint: '/v1/search', method: 'GET', statusCode: 500, success: false, latencyMs: 70 },
    { apiKeyId: keyId, occurredAt: daysAgo(1, 11), eventType: 'api_call', endpoint: '/v1/items', method: 'POST', statusCode: 201, latencyMs: 20 },
    { accountId, occurredAt: daysAgo(1, 12), eventType: 'file_upload', fileType: 'image/png', files: 2, bytes: 2048 },
  ]);
  expect(tail).toMatchObject({ accepted: 4, rejected: [] });
});

afterAll(async () => {
  await tally?.close();
  await db?.drop();
});

describe('usageSeries', () => {
  it('gap-filled buckets in camelCase: Dates, local days as text, counts as numbers, money and rates as decimal strings', async () => {
    const series = await tally.usageSeries({ accountId, from: daysAgo(3), to: daysAgo(0) });
    expect(series.map((b) => b.localDate)).toEqual([isoDay(3), isoDay(2), isoDay(1)]);
    const [empty, llm, api] = series;
    expect(empty).toMatchObject({ bucketStart: daysAgo(3), bucketEnd: daysAgo(2), requests: 0, cacheHitPct: expect.stringMatching(/^0(\.0+)?$/), avgLatencyMs: null, p95LatencyMs: null });
    expect(llm!.bucketStart).toBeInstanceOf(Date);
    expect(llm).toMatchObject({ requests: 2, cached: 1, tokensIn: 1500, tokensOut: 300, tokensTotal: 1800, unpriced: 0 });
    expect(canonical(llm!.costUsd)).toBe('0.001000000001');
    expect(canonical(llm!.potentialCostUsd)).toBe('0.501000000001');
    expect(canonical(llm!.savingsUsd)).toBe('0.5');
    expect(canonical(llm!.cacheHitPct)).toBe('50');
    expect(canonical(llm!.avgLatencyMs)).toBe('200');
    // the unfolded tail counts too
    expect(api).toMatchObject({ requests: 4, successful: 3, failed: 1, files: 2, bytes: 2048 });
    for (const b of series) {
      expect(Object.keys(b).slice(3)).toEqual([...ANALYTICS_METRICS]);
      for (const m of ['costUsd', 'potentialCostUsd', 'savingsUsd', 'quantity', 'cacheHitPct'] as const) expect(b[m]).toMatch(DECIMAL);
    }
  });

  it("days are the account's: a Tokyo day starts at 15:00 UTC the day before, and its date is Tokyo's", async () => {
    const series = await tally.usageSeries({ accountId: tokyoId, from: daysAgo(3), to: daysAgo(0) });
    expect(series.map((b) => b.localDate)).toEqual([isoDay(3), isoDay(2), isoDay(1), isoDay(0)]);
    expect(series[0]!.bucketStart).toEqual(daysAgo(3, -9));
    expect(series[0]!.bucketEnd).toEqual(daysAgo(2, -9));
    // 20:00 UTC two days ago is 05:00 yesterday in Tokyo
    expect(series.map((b) => b.requests)).toEqual([0, 0, 1, 0]);
  });

  it('filters take one value or a list, are ANDed, and an empty list is refused before any round trip', async () => {
    const requests = async (filters: Parameters<Tally['usageSeries']>[0]) =>
      (await tally.usageSeries(filters)).reduce((sum, b) => sum + b.requests, 0);
    const range = { accountId, from: daysAgo(3), to: daysAgo(0) };
    expect(await requests(range)).toBe(6);
    expect(await requests({ ...range, providers: 'openai' })).toBe(1);
    expect(await requests({ ...range, providers: ['openai', 'anthropic'] })).toBe(2);
    expect(await requests({ ...range, apiKeyIds: keyId })).toBe(2);
    expect(await requests({ ...range, apiKeyIds: [keyId], eventTypes: 'api_call' })).toBe(1);
    expect(await requests({ ...range, endpoints: ['/v1/search'], fileTypes: null })).toBe(2);
    expect(await requests({ ...range, fileTypes: 'image/png', models: undefined })).toBe(1);
    await expect(tally.usageSeries({ ...range, providers: [] })).rejects.toBeInstanceOf(InvalidInputError);
    await expect(tally.usageSeries({ ...range, apiKeyIds: 'not-a-key' })).rejects.toThrow(/apiKeyIds: must be a UUID/);
    await expect(tally.usageSeries({ ...range, granularity: 'minute' as 'hour' })).rejects.toBeInstanceOf(InvalidInputError);
  });

  it('hours, weeks and months', async () => {
    const hours = await tally.usageSeries({ accountId, from: daysAgo(2, 10), to: daysAgo(2, 12), granularity: 'hour' });
    expect(hours.map((h) => [h.bucketStart.toISOString(), h.requests])).toEqual([
      [daysAgo(2, 10).toISOString(), 1],
      [daysAgo(2, 11).toISOString(), 1],
    ]);
    const months = await tally.usageSeries({ accountId, from: daysAgo(2), to: daysAgo(0), granularity: 'month' });
    expect(months.reduce((s, m) => s + m.requests, 0)).toBe(6);
    expect(months.every((m) => m.localDate.endsWith('-01'))).toBe(true);
  });
});

describe('breakdown and topEndpoints', () => {
  it("breakdown: ranked rows with shares that add up to 100, the absent value as '(none)', the rest as 'other'", async () => {
    const rows = await tally.breakdown({ accountId, dimension: 'provider', from: isoDay(3), to: isoDay(1) });
    expect(rows.map((r) => [r.rank, r.value, r.label, r.isOther, r.requests])).toEqual([
      [1, null, '(none)', false, 4],
      [2, 'anthropic', 'anthropic', false, 1],
      [3, 'openai', 'openai', false, 1],
    ]);
    // 4, 1 and 1 of 6 with largest-remainder rounding: exactly 100.00 in all
    expect(rows.reduce((sum, r) => sum + Math.round(Number(r.sharePct) * 100), 0)).toBe(10_000);
    rows.forEach((r, i) => expect(Math.abs(Math.round(Number(r.sharePct) * 100) - [6667, 1667, 1667][i]!)).toBeLessThanOrEqual(1));
    expect(rows.every((r) => /^\d+\.\d{2}$/.test(r.sharePct))).toBe(true);
    const limited = await tally.breakdown({ accountId, dimension: 'provider', from: isoDay(3), to: isoDay(1), limit: 1, measure: 'requests' });
    expect(limited.map((r) => [r.rank, r.value, r.label, r.isOther, r.requests])).toEqual([
      [1, null, '(none)', false, 4],
      [2, null, 'other', true, 2],
    ]);
    const byKey = await tally.breakdown({ accountId, dimension: 'api_key', from: isoDay(3), to: isoDay(1), measure: 'cost', providers: ['openai'] });
    expect(byKey).toMatchObject([{ value: keyId, label: 'production', requests: 1, sharePct: '100.00' }]);
    expect(canonical(byKey[0]!.costUsd)).toBe('0.001000000001');
  });

  it("dates are 'YYYY-MM-DD' days that exist, checked before any round trip", async () => {
    for (const from of ['2026/01/01', '2026-02-30', '01-01-2026', '2026-1-1']) {
      await expect(tally.breakdown({ accountId, dimension: 'model', from, to: isoDay(1) }), from).rejects.toBeInstanceOf(InvalidInputError);
    }
    await expect(tally.topEndpoints({ accountId, from: isoDay(2), to: '2026-13-01' })).rejects.toThrow(/^topEndpoints: to: must be a day that exists$/);
    await expect(tally.topEndpoints({ accountId, from: '2026-1-1', to: isoDay(1) })).rejects.toThrow(/^topEndpoints: from: must be a date 'YYYY-MM-DD'$/);
    await expect(tally.breakdown({ accountId, dimension: 'colour' as 'model', from: isoDay(2), to: isoDay(1) })).rejects.toBeInstanceOf(InvalidInputError);
  });

  it('topEndpoints: rank, error rate, latency, and the previous period (nothing before: new)', async () => {
    const top = await tally.topEndpoints({ accountId, from: isoDay(2), to: isoDay(1) });
    expect(top.map((t) => [t.rank, t.endpoint, t.requests, t.failed])).toEqual([
      [1, '/v1/search', 2, 1],
      [2, '/v1/items', 1, 0],
    ]);
    expect(top[0]).toMatchObject({ previousRank: null, rankChange: null, requestsChangePct: null });
    expect(canonical(top[0]!.errorPct)).toBe('50');
    expect(canonical(top[0]!.avgLatencyMs)).toBe('60');
    expect(top[0]!.p95LatencyMs).toMatch(DECIMAL);
    expect(await tally.topEndpoints({ accountId, from: isoDay(2), to: isoDay(1), endpoints: '/v1/items', limit: 5, orderBy: 'cost' })).toMatchObject([
      { rank: 1, endpoint: '/v1/items' },
    ]);
  });
});

describe('comparePeriods, periodSummary, usageHistory, dashboardStats', () => {
  it('comparePeriods: one row per metric, camelCase names in the metrics order, every value a decimal string or null', async () => {
    const rows = await tally.comparePeriods({ accountId, period: 'week', at: new Date() });
    expect(rows.map((r) => r.metric)).toEqual([...ANALYTICS_METRICS]);
    for (const r of rows) {
      for (const v of [r.currentValue, r.previousValue, r.change, r.changePct]) if (v !== null) expect(v).toMatch(DECIMAL);
      expect(r.currentFrom).toBeInstanceOf(Date);
      expect(r.previousTo.getTime()).toBeLessThanOrEqual(r.currentFrom.getTime());
    }
    const day = await tally.comparePeriods({ accountId, period: 'day', at: daysAgo(1, 23), eventTypes: 'api_call' });
    const requests = day.find((r) => r.metric === 'requests')!;
    expect(canonical(requests.currentValue)).toBe('3');
    expect(canonical(requests.previousValue)).toBe('0');
    expect(requests.changePct).toBeNull();
    expect(requests.currentFrom).toEqual(daysAgo(1));
  });

  it('periodSummary: the month as its first day, totals, a forecast; a day of the month picks it', async () => {
    const summary = await tally.periodSummary({ accountId });
    expect(summary.month).toMatch(/^\d{4}-\d{2}-01$/);
    expect(summary.periodStart).toBeInstanceOf(Date);
    expect(summary.elapsedPct).toMatch(DECIMAL);
    expect(summary.forecastMethod).toBe('month_to_date_run_rate');
    expect(typeof summary.forecastRequests).toBe('number');
    expect(summary.forecastRequests).toBeGreaterThanOrEqual(summary.requests);
    expect(summary.forecastCostUsd).toMatch(DECIMAL);
    const again = await tally.periodSummary({ accountId, month: summary.month.slice(0, 8) + '15' });
    expect(again.month).toBe(summary.month);
    await expect(tally.periodSummary({ accountId, month: '2026-11' })).rejects.toBeInstanceOf(InvalidInputError);
  });

  it('usageHistory: the last months, oldest first, ending with this one', async () => {
    const history = await tally.usageHistory({ accountId, months: 3 });
    expect(history).toHaveLength(3);
    expect(history.every((m) => /^\d{4}-\d{2}-01$/.test(m.month))).toBe(true);
    expect(history.at(-1)!.month).toBe((await tally.periodSummary({ accountId })).month);
    expect(history.reduce((s, m) => s + m.requests, 0)).toBe(6);
  });

  it('dashboardStats: the last days with requests per provider and per model as numbers, keys as recorded', async () => {
    const days = await tally.dashboardStats({ accountId, days: 5 });
    expect(days.map((d) => d.day)).toEqual([isoDay(4), isoDay(3), isoDay(2), isoDay(1), isoDay(0)]);
    const llm = days.find((d) => d.day === isoDay(2))!;
    expect(llm.requestsByProvider).toEqual({ openai: 1, anthropic: 1 });
    expect(llm.requestsByModel).toEqual({ 'gpt-4o': 1, 'claude-sonnet-4': 1 });
    expect(days.find((d) => d.day === isoDay(1))).toMatchObject({ requests: 4, requestsByProvider: {}, requestsByModel: {} });
    expect(canonical(llm.costUsd)).toBe('0.001000000001');
  });

  it('errors: an unknown account is account_not_found for a service, a bad argument is invalid_parameter naming it', async () => {
    const missing = '00000000-0000-4000-8000-000000000000';
    await expect(tally.usageHistory({ accountId: missing })).rejects.toMatchObject({ code: 'account_not_found', sqlstate: 'P0002' });
    await expect(tally.usageHistory({ accountId: missing })).rejects.toBeInstanceOf(NotFoundError);
    await expect(tally.usageHistory({ accountId, months: 0 })).rejects.toMatchObject({ code: 'invalid_parameter', sqlstate: '22023' });
    await expect(tally.usageSeries({ accountId, from: daysAgo(0), to: daysAgo(1) })).rejects.toMatchObject({ code: 'invalid_parameter', sqlstate: '22023' });
  });
});

describe('asUser', () => {
  it("runs as the signed-in user: their accounts' analytics, RLS on the tables, forbidden (42501) for another account", async () => {
    const seen = await tally.asUser(owner, async (t) => ({
      accounts: (await t.listAccounts()).map((a) => a.id).sort(),
      series: await t.usageSeries({ accountId, from: daysAgo(3), to: daysAgo(0) }),
      owner: await t.hasRoleOnAccount({ accountId, role: 'owner' }),
      other: await t.hasRoleOnAccount({ accountId: otherAccountId }),
    }));
    expect(seen.accounts).toEqual([accountId, tokyoId].sort());
    expect(seen.series.reduce((s, b) => s + b.requests, 0)).toBe(6);
    expect(seen).toMatchObject({ owner: true, other: false });

    const denied = await tally.asUser(owner, (t) => t.breakdown({ accountId: otherAccountId, dimension: 'endpoint', from: isoDay(3), to: isoDay(1) })).catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(ForbiddenError);
    expect(denied).toMatchObject({ code: 'forbidden', sqlstate: '42501' });
    // the same answer for an account that does not exist: no existence oracle
    const missing = await tally.asUser(owner, (t) => t.usageHistory({ accountId: '00000000-0000-4000-8000-000000000000' })).catch((e: unknown) => e);
    expect(missing).toMatchObject({ code: 'forbidden', sqlstate: '42501' });
    // and a stranger sees only their own
    expect(await tally.asUser(stranger, async (t) => (await t.listAccounts()).map((a) => a.id))).toEqual([otherAccountId]);
  });

  it('sets the claims and the role for its transaction only, rolls back when fn throws, and checks the user id', async () => {
    const pool = new pg.Pool({ connectionString: db.url, max: 1 });
    try {
      const failed = await asUser(pool, owner, async (t) => {
        await t.createAccount({ name: 'Rolled back' });
        throw new Error('boom');
      }).catch((e: unknown) => e);
      expect(failed).toMatchObject({ message: 'boom' });
      const { rows } = await pool.query(
        "select current_user = session_user as own_role, coalesce(current_setting('request.jwt.claims', true), '') as claims, (select count(*) from tally.accounts where name = 'Rolled back')::int as rolled_back",
      );
      expect(rows).toEqual([{ own_role: true, claims: '', rolled_back: 0 }]);
      // the one connection was returned to the pool in a usable state
      expect(await asUser(pool, owner, async (t) => (await t.listAccounts()).length)).toBe(2);
    } finally {
      await pool.end();
    }
    await expect(tally.asUser('not-a-uuid', async () => 1)).rejects.toBeInstanceOf(InvalidInputError);
  });
});
