/**
 * Who may call the seven dashboard functions, and what each bad argument gets: members of
 * the account with any role read it; anyone else gets forbidden (42501), the same answer for
 * an account that does not exist; anon has no EXECUTE at all; service callers read any
 * account and are told account_not_found (P0002) for a missing one. Every validation error
 * is invalid_parameter (22023, the code in HINT) naming the argument, and a range reaching
 * aggregates past retention is past_retention (22023).
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';
import { createAccount, recordEvents, setSetting, type Queryable } from './helpers/ledger.ts';
import { anon, as, createUser, service, user, type Persona } from './helpers/personas.ts';
import {
  breakdown, comparePeriods, dashboardStats, drain, periodSummary, topEndpoints, usageHistory, usageSeries, type Filters, type Row,
} from './helpers/analytics.ts';

let db: TestDatabase;
let account: string;
let other: string;
const people: Record<'owner' | 'admin' | 'member' | 'viewer' | 'outsider', string> = { owner: '', admin: '', member: '', viewer: '', outsider: '' };

beforeAll(async () => {
  db = await migratedDatabase();
  for (const name of ['retention.events', 'retention.hourly', 'retention.daily']) await setSetting(db.pool, name, '100 years');
  for (const role of Object.keys(people) as (keyof typeof people)[]) people[role] = await createUser(db.pool);
  account = await createAccount(db.pool, 'Readers', people.owner, 'Asia/Kolkata');
  other = await createAccount(db.pool, 'Elsewhere', people.outsider);
  for (const role of ['admin', 'member', 'viewer'] as const) {
    await as(db.pool, service, (c) =>
      c.query('select tally.set_account_member(p_account_id => $1::uuid, p_user_id => $2::uuid, p_role => $3::text)', [account, people[role], role]),
    );
  }
  const result = await recordEvents(db.pool, [
    { account_id: account, event_type: 'api_request', occurred_at: '2026-05-01T06:00:00Z', provider: 'openai', endpoint: '/v1/x' },
    { account_id: other, event_type: 'api_request', occurred_at: '2026-05-01T06:00:00Z', provider: 'openai', endpoint: '/v1/x' },
  ]);
  expect(result.accepted).toBe(2);
  await drain(db.pool);
});
afterAll(async () => {
  await db?.drop();
});

const SIGNATURES = {
  get_usage_series: 'uuid, timestamptz, timestamptz, text, uuid[], text[], text[], text[], text[], text[]',
  get_breakdown: 'uuid, text, date, date, uuid[], text[], text[], text[], text[], text[], integer, text',
  get_top_endpoints: 'uuid, date, date, integer, text, uuid[], text[], text[], text[], text[], text[]',
  compare_periods: 'uuid, text, timestamptz, uuid[], text[], text[], text[], text[], text[]',
  get_period_summary: 'uuid, date',
  get_usage_history: 'uuid, integer',
  get_dashboard_stats: 'uuid, integer',
} as const;
type Fn = keyof typeof SIGNATURES;

/** A valid call of each function, and how many requests of the fixture event it shows. */
const CALLS: Record<Fn, { call: (q: Queryable, account: string) => Promise<Row[]>; requests: (rows: Row[]) => unknown }> = {
  get_usage_series: { call: (q, a) => usageSeries(q, a, '2026-05-01T00:00:00Z', '2026-05-02T00:00:00Z'), requests: (r) => r.map((x) => x.requests) },
  get_breakdown: { call: (q, a) => breakdown(q, a, 'provider', '2026-05-01', '2026-05-01'), requests: (r) => r.map((x) => x.requests) },
  get_top_endpoints: { call: (q, a) => topEndpoints(q, a, '2026-05-01', '2026-05-01'), requests: (r) => r.map((x) => x.requests) },
  compare_periods: { call: (q, a) => comparePeriods(q, a, 'day', '2026-05-01T12:00:00Z'), requests: (r) => r.find((x) => x.metric === 'requests')?.current_value },
  get_period_summary: { call: (q, a) => periodSummary(q, a, '2026-05-01'), requests: (r) => r.map((x) => x.requests) },
  get_usage_history: { call: (q, a) => usageHistory(q, a, 1), requests: (r) => r.length },
  get_dashboard_stats: { call: (q, a) => dashboardStats(q, a, 1), requests: (r) => r.length },
};
/** The fixture's answer (May 1 in Kolkata, one request; the history and dashboard answer one row). */
const EXPECTED: Record<Fn, unknown> = {
  get_usage_series: [1, 0], get_breakdown: [1], get_top_endpoints: [1], compare_periods: '1', get_period_summary: [1],
  get_usage_history: 1, get_dashboard_stats: 1,
};
const FUNCTIONS = Object.keys(CALLS) as Fn[];

const callAs = (persona: Persona, fn: Fn, target: string) => as(db.pool, persona, (c) => CALLS[fn].call(c, target));

describe('who may call the dashboard functions', () => {
  it('EXECUTE: authenticated and service_role only, never PUBLIC or anon', async () => {
    for (const fn of FUNCTIONS) {
      const { rows } = await db.pool.query(
        `select has_function_privilege('anon', p, 'EXECUTE') as anon, has_function_privilege('authenticated', p, 'EXECUTE') as authenticated,
                has_function_privilege('service_role', p, 'EXECUTE') as service,
                exists (select 1 from aclexplode(proacl) a where a.grantee = 0) as public,
                prosecdef as definer, provolatile as volatility,
                proconfig @> array['search_path=pg_catalog, pg_temp'] as pinned
         from pg_proc, cast($1::text as regprocedure) p where pg_proc.oid = p`,
        [`tally.${fn}(${SIGNATURES[fn]})`],
      );
      expect(rows[0], fn).toEqual({ anon: false, authenticated: true, service: true, public: false, definer: true, volatility: 's', pinned: true });
    }
  });

  it.each(FUNCTIONS)('%s: every member role reads the account', async (fn) => {
    for (const role of ['owner', 'admin', 'member', 'viewer'] as const) {
      expect(CALLS[fn].requests(await callAs(user(people[role]), fn, account)), role).toEqual(EXPECTED[fn]);
    }
  });

  it.each(FUNCTIONS)('%s: a non-member and a missing account get the same forbidden (42501); anon has no EXECUTE', async (fn) => {
    const outsider = await callAs(user(people.outsider), fn, account).then(() => null, (e: Error & { code?: string; hint?: string }) => e);
    expect(outsider).toMatchObject({ code: '42501', hint: 'forbidden' });
    const missing = randomUUID();
    const nowhere = await callAs(user(people.outsider), fn, missing).then(() => null, (e: Error & { code?: string; hint?: string }) => e);
    expect(nowhere).toMatchObject({ code: '42501', hint: 'forbidden' });
    // word for word, but for the id the caller gave
    expect(nowhere!.message.replace(missing, '<id>')).toBe(outsider!.message.replace(account, '<id>'));
    // a member of another account reads that one, not this one
    expect(CALLS[fn].requests(await callAs(user(people.outsider), fn, other))).toEqual(fn === 'get_usage_series' ? [1] : EXPECTED[fn]); // a UTC account: one day
    await expect(callAs(anon, fn, account)).rejects.toMatchObject({ code: '42501' });
    await expect(callAs(anon, fn, missing)).rejects.toMatchObject({ code: '42501' });
  });

  it.each(FUNCTIONS)('%s: service_role reads any account; a missing one is account_not_found (P0002)', async (fn) => {
    expect(CALLS[fn].requests(await callAs(service, fn, account))).toEqual(EXPECTED[fn]);
    await expect(callAs(service, fn, randomUUID())).rejects.toMatchObject({ code: 'P0002', hint: 'account_not_found' });
    await expect(callAs(service, fn, null as unknown as string)).rejects.toMatchObject({ code: '22023', hint: 'invalid_parameter' });
  });

  it('access is checked first: a non-member with bad arguments is forbidden; a member with bad arguments gets invalid_parameter', async () => {
    const bad = (q: Queryable, a: string) => breakdown(q, a, 'colour', '2026-05-02', '2026-05-01');
    await expect(as(db.pool, user(people.outsider), (c) => bad(c, account))).rejects.toMatchObject({ code: '42501', hint: 'forbidden' });
    await expect(as(db.pool, user(people.viewer), (c) => bad(c, account))).rejects.toMatchObject({ code: '22023', hint: 'invalid_parameter' });
  });

  it('a removed member loses access', async () => {
    const temp = await createUser(db.pool);
    await as(db.pool, service, (c) => c.query("select tally.set_account_member(p_account_id => $1::uuid, p_user_id => $2::uuid, p_role => 'viewer')", [account, temp]));
    expect(CALLS.get_breakdown.requests(await callAs(user(temp), 'get_breakdown', account))).toEqual([1]);
    await as(db.pool, service, (c) => c.query('select tally.remove_account_member(p_account_id => $1::uuid, p_user_id => $2::uuid)', [account, temp]));
    await expect(callAs(user(temp), 'get_breakdown', account)).rejects.toMatchObject({ code: '42501', hint: 'forbidden' });
  });
});

/** A rejection with code 22023 and the Tally code `hint`, whose message matches `message`. */
async function expectRefused(promise: Promise<unknown>, message: RegExp, hint = 'invalid_parameter'): Promise<void> {
  await expect(promise).rejects.toMatchObject({ code: '22023', hint, message: expect.stringMatching(message) });
}
/** An instant a microsecond after a whole-second ISO instant. */
const plusMicrosecond = (iso: string) => new Date(iso).toISOString().replace('Z', '001Z');

describe('bad arguments: invalid_parameter (22023) naming the argument', () => {
  const q = () => db.pool;

  it('get_usage_series: range order, granularity, caps per granularity', async () => {
    await expectRefused(usageSeries(q(), account, '2026-05-01T00:00:00Z', '2026-05-01T00:00:00Z'), /^from: must be before to/);
    await expectRefused(usageSeries(q(), account, '2026-05-02T00:00:00Z', '2026-05-01T00:00:00Z'), /^from: must be before to/);
    await expectRefused(usageSeries(q(), account, null as unknown as string, '2026-05-01T00:00:00Z'), /^from, to: both are required/);
    await expectRefused(usageSeries(q(), account, '2026-05-01T00:00:00Z', null as unknown as string), /^from, to: both are required/);
    await expectRefused(usageSeries(q(), account, '2026-05-01T00:00:00Z', '2026-05-02T00:00:00Z', 'minute'), /^granularity: must be hour, day, week or month/);
    await expectRefused(usageSeries(q(), account, '2026-05-01T00:00:00Z', '2026-05-02T00:00:00Z', null as unknown as string), /^granularity/);
    // each cap holds exactly, and a microsecond more is refused
    const caps: [string, string, string, number][] = [
      ['hour', '2026-01-01T00:00:00Z', '2026-02-01T00:00:00Z', 744], // 31 days
      ['day', '2016-01-01T00:00:00Z', '2026-01-08T00:00:00Z', 3661], // 3660 days (the end instant is a bucket of its own in Kolkata)
      ['week', '2016-01-04T00:00:00Z', '2025-12-22T00:00:00Z', 521], // 520 weeks, Monday to Monday
      ['month', '2016-01-01T00:00:00Z', '2026-01-01T00:00:00Z', 121], // 120 months
    ];
    for (const [granularity, from, to, buckets] of caps) {
      expect(await usageSeries(q(), account, from, to, granularity), granularity).toHaveLength(buckets);
      await expectRefused(usageSeries(q(), account, from, plusMicrosecond(to), granularity), new RegExp(`^from, to: at most .* at granularity ${granularity}`));
    }
  });

  it('get_breakdown: dimension, measure, limit, day range', async () => {
    const ok = (more: Parameters<typeof breakdown>[5] = {}, dimension = 'provider', from = '2026-05-01', to = '2026-05-01') => breakdown(q(), account, dimension, from, to, more);
    for (const dimension of ['colour', 'Provider', null]) await expectRefused(ok({}, dimension as string), /^dimension: must be one of event_type, api_key, provider, model, endpoint, file_type, status_class/);
    for (const measure of ['latency', 'requests ', null]) await expectRefused(ok({ measure: measure as string }), /^measure: must be requests, cost, bytes or tokens/);
    for (const limit of [0, -1, 1001, null]) await expectRefused(ok({ limit: limit as number }), /^limit: must be from 1 to 1000/);
    for (const limit of [1, 1000]) expect(await ok({ limit })).toHaveLength(1);
    for (const measure of ['requests', 'cost', 'bytes', 'tokens']) expect(await ok({ measure })).toHaveLength(1);
    await expectRefused(ok({}, 'provider', '2026-05-02', '2026-05-01'), /^from: must not be after to/);
    await expectRefused(ok({}, 'provider', null as unknown as string), /^from, to: both are required/);
    // at most 3660 days, both ends included
    expect(await ok({}, 'provider', '2016-04-24', '2026-05-01')).toHaveLength(1); // 3660 days
    await expectRefused(ok({}, 'provider', '2016-04-23', '2026-05-01'), /^from, to: at most 3660 days \(got 3661\)/);
    await expectRefused(ok({ filters: { providers: ['openai'] } }, 'status_class'), /status_class/);
  });

  it('get_top_endpoints: order_by, limit, day range', async () => {
    for (const orderBy of ['latency', null]) await expectRefused(topEndpoints(q(), account, '2026-05-01', '2026-05-01', { orderBy: orderBy as string }), /^order_by: must be requests or cost/);
    for (const limit of [0, 1001, null]) await expectRefused(topEndpoints(q(), account, '2026-05-01', '2026-05-01', { limit: limit as number }), /^limit: must be from 1 to 1000/);
    expect(await topEndpoints(q(), account, '2026-05-01', '2026-05-01', { limit: 1000, orderBy: 'cost' })).toHaveLength(1);
    await expectRefused(topEndpoints(q(), account, '2026-05-02', '2026-05-01'), /^from: must not be after to/);
    expect(await topEndpoints(q(), account, '2016-04-24', '2026-05-01')).toHaveLength(1);
    await expectRefused(topEndpoints(q(), account, '2016-04-23', '2026-05-01'), /^from, to: at most 3660 days/);
  });

  it('compare_periods: period and at', async () => {
    for (const period of ['year', 'hour', null]) await expectRefused(comparePeriods(q(), account, period as string, '2026-05-01T12:00:00Z'), /^period: must be day, week or month/);
    await expectRefused(comparePeriods(q(), account, 'day', null as unknown as string), /^at: is required/);
  });

  it('get_usage_history and get_dashboard_stats: months and days bounds', async () => {
    for (const months of [0, 121, -5, null]) await expectRefused(usageHistory(q(), account, months as number), /^months: must be from 1 to 120/);
    expect(await usageHistory(q(), account, 120)).toHaveLength(120);
    for (const days of [0, 3661, null]) await expectRefused(dashboardStats(q(), account, days as number), /^days: must be from 1 to 3660/);
    expect(await dashboardStats(q(), account, 3660)).toHaveLength(3660);
  });

  it('filters: an empty list, a list over 1000 values or holding NULL is refused by every function that takes them', async () => {
    const withFilters: [string, (f: Filters) => Promise<Row[]>][] = [
      ['get_usage_series', (f) => usageSeries(q(), account, '2026-05-01T00:00:00Z', '2026-05-02T00:00:00Z', 'day', f)],
      ['get_breakdown', (f) => breakdown(q(), account, 'model', '2026-05-01', '2026-05-01', { filters: f })],
      ['get_top_endpoints', (f) => topEndpoints(q(), account, '2026-05-01', '2026-05-01', { filters: f })],
      ['compare_periods', (f) => comparePeriods(q(), account, 'day', '2026-05-01T12:00:00Z', f)],
    ];
    const names: [keyof Filters, string, string][] = [
      ['apiKeyIds', 'api_key_ids', randomUUID()], ['eventTypes', 'event_types', 'x'], ['providers', 'providers', 'x'],
      ['models', 'models', 'x'], ['endpoints', 'endpoints', 'x'], ['fileTypes', 'file_types', 'x'],
    ];
    for (const [fn, call] of withFilters) {
      for (const [key, name, value] of names) {
        await expectRefused(call({ [key]: [] }), new RegExp(`^${name}: an empty list matches nothing; pass NULL for no filter`));
        await expectRefused(call({ [key]: Array.from({ length: 1001 }, () => value) }), new RegExp(`^${name}: at most 1000 values`));
        await expectRefused(call({ [key]: [value, null] as string[] }), /^filters: a list may not hold NULL/);
        expect(await call({ [key]: Array.from({ length: 1000 }, () => value) }), `${fn} ${name}`).toBeDefined();
      }
    }
  });
});

describe('past retention: past_retention (22023)', () => {
  it("the first day kept is the one apply_retention keeps (its UTC date), whatever the session's TimeZone", async () => {
    const client = await db.pool.connect();
    try {
      await setSetting(db.pool, 'retention.daily', '30 days');
      // apply_retention runs with TimeZone UTC: it deletes the daily rows before this date
      const first = (await client.query("select ((now() at time zone 'UTC') - interval '30 days')::date::text as d")).rows[0].d as string;
      const before = new Date(Date.parse(`${first}T00:00:00Z`) - 86_400_000).toISOString().slice(0, 10);
      const kolkataMidnight = (date: string) => new Date(Date.parse(`${date}T00:00:00Z`) - 5.5 * 3_600_000).toISOString();
      // at any time of day, one of the two far zones has another date than UTC for that instant
      for (const zone of ['UTC', 'Etc/GMT+12', 'Etc/GMT-14']) {
        await client.query(`set timezone = '${zone}'`);
        await expectRefused(breakdown(client, account, 'provider', before, first), /past retention/, 'past_retention');
        await expectRefused(topEndpoints(client, account, before, first), /past retention/, 'past_retention');
        await expectRefused(usageSeries(client, account, kolkataMidnight(before), kolkataMidnight(first), 'day'), /past retention/, 'past_retention');
        expect(await breakdown(client, account, 'provider', first, first), zone).toEqual([]);
        expect(await topEndpoints(client, account, first, first), zone).toEqual([]);
        expect(await usageSeries(client, account, kolkataMidnight(first), kolkataMidnight(first).replace('Z', '001Z'), 'day'), zone).toHaveLength(1);
      }
    } finally {
      await client.query('reset timezone');
      client.release();
      await setSetting(db.pool, 'retention.daily', '100 years');
    }
  });

  it('day, week and breakdown ranges need daily rows; hour ranges and compare_periods need hourly rows; months are kept forever', async () => {
    const ago = (days: number) => new Date(Date.now() - days * 86_400_000);
    const iso = (days: number) => ago(days).toISOString();
    const date = (days: number) => iso(days).slice(0, 10);
    try {
      await setSetting(db.pool, 'retention.daily', '30 days');
      await setSetting(db.pool, 'retention.hourly', '2 days');
      for (const granularity of ['day', 'week']) {
        await expectRefused(usageSeries(db.pool, account, iso(60), iso(1), granularity), /^from: daily usage before .* is past retention \(setting retention.daily\)/, 'past_retention');
      }
      expect((await usageSeries(db.pool, account, iso(60), iso(1), 'month')).length).toBeGreaterThanOrEqual(2);
      expect((await usageSeries(db.pool, account, iso(20), iso(1), 'day')).length).toBeGreaterThanOrEqual(19);
      await expectRefused(breakdown(db.pool, account, 'provider', date(60), date(1)), /^from: daily usage before .* is past retention/, 'past_retention');
      await expectRefused(topEndpoints(db.pool, account, date(60), date(1)), /^from: daily usage before .* is past retention/, 'past_retention');
      // the part of the previous period past retention counts as empty
      expect(await topEndpoints(db.pool, account, date(20), date(1))).toEqual([]);
      await expectRefused(dashboardStats(db.pool, account, 60), /past retention/, 'past_retention');
      expect(await dashboardStats(db.pool, account, 20)).toHaveLength(20);
      await expectRefused(usageSeries(db.pool, account, iso(3), iso(1), 'hour'), /^from: hourly usage before .* is past retention \(setting retention.hourly\)/, 'past_retention');
      expect(await usageSeries(db.pool, account, iso(1), iso(0), 'hour')).toHaveLength(25);
      await expectRefused(comparePeriods(db.pool, account, 'week', iso(0)), /^at: the previous week starts before .* \(setting retention.hourly\)/, 'past_retention');
      await expectRefused(comparePeriods(db.pool, account, 'month'), /^at: the previous month starts before/, 'past_retention');
      expect(await usageHistory(db.pool, account, 120)).toHaveLength(120);
      expect(await periodSummary(db.pool, account, '2026-05-01')).toMatchObject([{ requests: 1 }]);
    } finally {
      for (const name of ['retention.hourly', 'retention.daily']) await setSetting(db.pool, name, '100 years');
    }
  });
});
