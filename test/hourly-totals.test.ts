/**
 * The hourly totals of migration 38 (tally.usage_hourly_totals): folded by run_rollups equal
 * to a direct GROUP BY of the events by account and UTC hour (zones whose offsets are not
 * whole hours included) and to the sum of the hour's usage_hourly rows; verify_rollups
 * reports a tampered, missing or stray row (grain hourly_totals); void_events and
 * recompute_rollups rebuild them; apply_retention deletes them with the hourly rows; members
 * read only their accounts' rows; the unfiltered questions by hour read them and stay exact.
 * And an installation upgraded to migration 38 gets them for the hours it already holds.
 */
import fs from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMigrations } from '../src/database/migrate.ts';
import { emptyDatabase, migratedDatabase, type TestDatabase } from './helpers/db.ts';
import { createAccount, createApiKey, recordEvents, setSetting } from './helpers/ledger.ts';
import { migrateBefore } from './helpers/partial-migrate.ts';
import { randomEvents } from './helpers/random-events.ts';
import { anon, as, createUser, service, user } from './helpers/personas.ts';

let db: TestDatabase;
let accounts: string[] = [];
beforeAll(async () => {
  db = await migratedDatabase();
  await setSetting(db.pool, 'retention.events', '100 years');
  await setSetting(db.pool, 'retention.daily', '100 years');
  await setSetting(db.pool, 'retention.hourly', '100 years');
});
afterAll(async () => {
  await db?.drop();
});

async function drain(pool = db.pool, chunk: number | null = null): Promise<void> {
  while ((await pool.query('select tally.run_rollups(p_max_events => $1::bigint) as r', [chunk])).rows[0].r.more);
}

const METRICS = ['requests', 'successful', 'failed', 'cached', 'files', 'bytes', 'tokens_in', 'tokens_out', 'cost_usd', 'potential_cost_usd', 'quantity', 'latency_count', 'latency_sum', 'latency_max', 'latency_hist', 'unpriced'];

/** The totals computed straight from the folded, non-voided events: one row per account and UTC hour. */
const DIRECT = `
  with d as (
    select date_trunc('hour', e.occurred_at, 'UTC') as bucket, e.*
    from tally.events e
    where e.account_id = any($1::uuid[]) and e.id <= (select watermark from tally.rollup_state)
      and not exists (select 1 from tally.event_voids v where v.account_id = e.account_id and v.event_id = e.id)
  ),
  slots as (
    select account_id, bucket, width_bucket(latency_ms, tally.latency_buckets()) as k, count(*) as n
    from d where latency_ms is not null group by 1, 2, 3
  ),
  groups as (
    select account_id, bucket,
           count(*) as requests, count(*) filter (where success) as successful, count(*) filter (where not success) as failed,
           count(*) filter (where cached) as cached, coalesce(sum(files), 0) as files, coalesce(sum(bytes), 0) as bytes,
           coalesce(sum(tokens_in), 0) as tokens_in, coalesce(sum(tokens_out), 0) as tokens_out,
           coalesce(sum(cost_usd), 0) as cost_usd, coalesce(sum(potential_cost_usd), 0) as potential_cost_usd,
           sum(quantity) as quantity, count(latency_ms) as latency_count, coalesce(sum(latency_ms), 0) as latency_sum,
           max(latency_ms) as latency_max,
           count(*) filter (where (tokens_in is not null or tokens_out is not null) and (cost_usd is null or potential_cost_usd is null)) as unpriced
    from d group by 1, 2
  )
  select g.*, (select array_agg(coalesce(s.n, 0)::bigint order by k.k)
               from generate_series(0, 41) k(k)
               left join slots s on s.account_id = g.account_id and s.bucket = g.bucket and s.k = k.k) as latency_hist
  from groups g`;

/** The stored totals that differ from the direct computation (either side missing, or any metric). */
async function differences(pool = db.pool, ids = accounts): Promise<{ account_id: string; bucket: string; expected: string | null; actual: string | null }[]> {
  const { rows } = await pool.query(
    `with x as (${DIRECT}), y as (select * from tally.usage_hourly_totals where account_id = any($1::uuid[]))
     select coalesce(x.account_id, y.account_id) as account_id, coalesce(x.bucket, y.bucket)::text as bucket, x.requests as expected, y.requests as actual
     from x full join y on y.account_id = x.account_id and y.bucket = x.bucket
     where ${METRICS.map((m) => `x.${m} is distinct from y.${m}`).join(' or ')}
     order by 1, 2`,
    [ids],
  );
  return rows;
}

/** The totals against the sums of usage_hourly's rows of each hour (counts and histograms). */
async function unequalToHourlyRows(pool = db.pool, ids = accounts): Promise<number> {
  const { rows } = await pool.query(
    `with h as (
       select account_id, bucket, sum(requests) as requests, sum(cost_usd) as cost_usd, max(latency_max) as latency_max,
              (select array_agg(s order by k) from (select k, sum(u2.latency_hist[k])::bigint as s
                 from tally.usage_hourly u2, generate_series(1, 42) k
                 where u2.account_id = u.account_id and u2.bucket = u.bucket group by k) z) as latency_hist
       from tally.usage_hourly u where account_id = any($1::uuid[]) group by 1, 2)
     select count(*)::int as n from h full join (select * from tally.usage_hourly_totals where account_id = any($1::uuid[])) t using (account_id, bucket)
     where h.requests is distinct from t.requests or h.cost_usd is distinct from t.cost_usd
        or h.latency_max is distinct from t.latency_max or h.latency_hist is distinct from t.latency_hist`,
    [ids],
  );
  return rows[0].n;
}

const verify = async (from = '2026-01-01', to = '2026-12-31') =>
  (await db.pool.query('select grain, account_id, bucket, dim_key, expected, actual from tally.verify_rollups($1::timestamptz, $2::timestamptz) order by 1, 2, 3', [from, to])).rows;
/** verify_rollups' rows of grain hourly_totals, with the bucket as an instant. */
const verifyTotals = async () =>
  (
    await db.pool.query(
      `select account_id, bucket::timestamptz as bucket, dim_key, expected, actual from tally.verify_rollups('2026-01-01', '2026-12-31')
       where grain = 'hourly_totals' order by account_id, bucket::timestamptz`,
    )
  ).rows as { account_id: string; bucket: Date; dim_key: string | null; expected: Record<string, number> | null; actual: Record<string, number> | null }[];

/** Events over the hours around local midnights of :30 and :45 zones and New York's DST changes. */
const events = (keys: Record<string, string[]>, n: number, seed: number) =>
  randomEvents({ keys, n, seed, windows: [Date.parse('2026-03-07T00:00:00Z'), Date.parse('2026-10-31T00:00:00Z')], days: 3 });

describe('hourly totals', () => {
  let keys: Record<string, string[]> = {};
  beforeAll(async () => {
    accounts = [
      await createAccount(db.pool, 'Totals UTC'),
      await createAccount(db.pool, 'Totals Kolkata', null, 'Asia/Kolkata'),
      await createAccount(db.pool, 'Totals Kathmandu', null, 'Asia/Kathmandu'),
      await createAccount(db.pool, 'Totals New York', null, 'America/New_York'),
    ];
    keys = Object.fromEntries(await Promise.all(accounts.map(async (a) => [a, [(await createApiKey(db.pool, a, 'k1')).id, (await createApiKey(db.pool, a, 'k2')).id]])));
    expect(await recordEvents(db.pool, events(keys, 800, 38))).toMatchObject({ accepted: 800, rejected: [] });
    await drain(db.pool, 89); // several runs, so hours are merged by ON CONFLICT too
  });

  it('are folded equal to a direct GROUP BY of the events and to the sums of the hourly rows; verify_rollups finds nothing', async () => {
    expect(await differences()).toEqual([]);
    expect(await unequalToHourlyRows()).toBe(0);
    const { rows } = await db.pool.query('select count(*)::int as n from tally.usage_hourly_totals where account_id = any($1::uuid[])', [accounts]);
    expect(rows[0].n).toBeGreaterThan(50);
    expect(await verify()).toEqual([]);
  });

  it('verify_rollups reports a tampered, a missing and a stray row (grain hourly_totals); recompute_rollups repairs them', async () => {
    const [utc, kolkata] = accounts as [string, string];
    const { rows: pick } = await db.pool.query(
      'select bucket, requests::int from tally.usage_hourly_totals where account_id = $1 order by bucket limit 1',
      [utc],
    );
    await db.pool.query('update tally.usage_hourly_totals set requests = requests + 1 where account_id = $1 and bucket = $2', [utc, pick[0].bucket]);
    const { rows: gone } = await db.pool.query(
      'delete from tally.usage_hourly_totals where account_id = $1 and bucket = (select min(bucket) from tally.usage_hourly_totals where account_id = $1) returning bucket, requests::int',
      [kolkata],
    );
    await db.pool.query(
      `insert into tally.usage_hourly_totals (account_id, bucket, requests, successful, failed, cached, files, bytes, tokens_in, tokens_out,
         cost_usd, potential_cost_usd, quantity, latency_count, latency_sum, latency_max, latency_hist, unpriced)
       values ($1, '2026-06-15T10:00:00Z', 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, null, array_fill(0::bigint, array[42]), 0)`,
      [utc],
    );
    const found = await verifyTotals();
    const key = (account: string, at: Date | string) => `${account} ${new Date(at).toISOString()}`;
    expect(found.map((r) => [key(r.account_id, r.bucket), r.dim_key])).toEqual(
      [key(utc, pick[0].bucket), key(utc, '2026-06-15T10:00:00Z'), key(kolkata, gone[0].bucket)].sort().map((k) => [k, null]),
    );
    const at = (account: string, t: Date | string) => found.find((r) => key(r.account_id, r.bucket) === key(account, t))!;
    expect([at(utc, pick[0].bucket).expected!.requests, at(utc, pick[0].bucket).actual!.requests]).toEqual([pick[0].requests, pick[0].requests + 1]);
    expect(at(utc, '2026-06-15T10:00:00Z').expected).toBeNull();
    expect([at(kolkata, gone[0].bucket).expected!.requests, at(kolkata, gone[0].bucket).actual]).toEqual([gone[0].requests, null]);
    // nothing else differs: the rows per tuple of those hours are intact
    expect((await verify()).filter((r) => r.grain !== 'hourly_totals')).toEqual([]);
    expect(await verify('2026-05-01', '2026-05-31')).toEqual([]);

    await db.pool.query(`select tally.recompute_rollups('2026-01-01'::timestamptz, '2026-12-31'::timestamptz)`);
    expect(await verify()).toEqual([]);
    expect(await differences()).toEqual([]);
  });

  it('void_events rebuilds the totals of the hours its events were counted in (folded or not)', async () => {
    expect(await recordEvents(db.pool, events(keys, 150, 39))).toMatchObject({ accepted: 150 });
    await drain();
    expect(await recordEvents(db.pool, events(keys, 50, 40))).toMatchObject({ accepted: 50 });
    const { rows } = await db.pool.query('select id from tally.events where account_id = any($1::uuid[]) order by id desc limit 60', [accounts]);
    const ids = rows.map((r) => r.id as string).filter((_, i) => i % 3 === 0);
    const { rows: voided } = await as(db.pool, service, (c) =>
      c.query("select tally.void_events(p_event_ids => $1::bigint[], p_reason => 'test: void rebuilds hourly totals') as r", [ids]),
    );
    expect(voided[0].r).toMatchObject({ voided: 20 });
    await drain();
    expect(await differences()).toEqual([]);
    expect(await unequalToHourlyRows()).toBe(0);
    expect(await verify()).toEqual([]);
  });

  it('the questions by hour read them and stay exact, without filters and with one', async () => {
    const [utc] = accounts as [string];
    // an event past the watermark is included
    expect(await recordEvents(db.pool, [{ account_id: utc, event_type: 'api_request', occurred_at: '2026-03-08T05:10:00Z', latency_ms: 7 }])).toMatchObject({ accepted: 1 });
    const series = async (filter: string | null) =>
      (
        await db.pool.query(
          `select bucket_start, requests::int, p95_latency_ms::text from tally.get_usage_series($1, '2026-03-07T00:00:00Z', '2026-03-10T00:00:00Z', 'hour', p_providers => $2::text[])
           where requests > 0 order by 1`,
          [utc, filter === null ? null : [filter]],
        )
      ).rows.map((r) => [r.bucket_start.toISOString(), r.requests]);
    const raw = async (filter: string | null) =>
      (
        await db.pool.query(
          `select date_trunc('hour', occurred_at, 'UTC') as h, count(*)::int as n from tally.events e
           where account_id = $1 and occurred_at >= '2026-03-07T00:00:00Z' and occurred_at < '2026-03-10T00:00:00Z' and ($2::text is null or provider = $2)
             and not exists (select 1 from tally.event_voids v where v.account_id = e.account_id and v.event_id = e.id)
           group by 1 order by 1`,
          [utc, filter],
        )
      ).rows.map((r) => [r.h.toISOString(), r.n]);
    const all = await series(null);
    expect(all.length).toBeGreaterThan(10);
    expect(all).toEqual(await raw(null));
    expect(await series('openai')).toEqual(await raw('openai'));
    // the unfiltered question reads the totals, the filtered one the rows per tuple (the
    // transaction's table counters, pg_stat_xact_user_tables, say which were scanned; on a
    // new connection, since a backend may still hold the counts of its last transactions)
    const reads = async (providers: string[] | null) => {
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      try {
        await client.query('begin');
        await client.query(`select * from tally.get_usage_series($1, '2026-03-07T00:00:00Z', '2026-03-10T00:00:00Z', 'hour', p_providers => $2::text[])`, [utc, providers]);
        const { rows: scans } = await client.query(
          `select relname, (coalesce(seq_scan, 0) + coalesce(idx_scan, 0))::int as n from pg_catalog.pg_stat_xact_user_tables
           where schemaname = 'tally' and relname in ('usage_hourly', 'usage_hourly_totals')`,
        );
        await client.query('rollback');
        const n = (t: string) => scans.find((r) => r.relname === t)?.n ?? 0;
        return { totals: n('usage_hourly_totals') > 0, tuples: n('usage_hourly') > 0 };
      } finally {
        await client.end();
      }
    };
    expect(await reads(null)).toEqual({ totals: true, tuples: false });
    expect(await reads(['openai'])).toEqual({ totals: false, tuples: true });
  });

  it('apply_retention deletes the totals past retention.hourly with the hourly rows', async () => {
    const acct = await createAccount(db.pool, 'Retention totals');
    const at = (hoursAgo: number) => new Date(Date.now() - hoursAgo * 3_600_000).toISOString();
    expect(await recordEvents(db.pool, [200, 100, 5, 1].map((h) => ({ account_id: acct, event_type: 'api_request', occurred_at: at(h) })))).toMatchObject({ accepted: 4 });
    await drain();
    const hours = async (table: string) => (await db.pool.query(`select count(distinct bucket)::int as n from tally.${table} where account_id = $1`, [acct])).rows[0].n;
    expect(await hours('usage_hourly_totals')).toBe(4);
    try {
      await setSetting(db.pool, 'retention.hourly', '2 days');
      await as(db.pool, service, (c) => c.query('select tally.apply_retention()'));
      expect(await hours('usage_hourly_totals')).toBe(2);
      expect(await hours('usage_hourly')).toBe(2);
    } finally {
      await setSetting(db.pool, 'retention.hourly', '100 years');
    }
  });

  it("members read their accounts' rows only; anon reads none; nobody but the fold writes", async () => {
    const owner = await createUser(db.pool);
    const mine = await createAccount(db.pool, 'Mine totals', owner);
    expect(await recordEvents(db.pool, [{ account_id: mine, event_type: 'api_request', occurred_at: '2026-03-03T12:00:00Z' }])).toMatchObject({ accepted: 1 });
    await drain();
    const { rows } = await as(db.pool, user(owner), (c) => c.query('select distinct account_id from tally.usage_hourly_totals'));
    expect(rows).toEqual([{ account_id: mine }]);
    const all = await as(db.pool, service, (c) => c.query('select count(distinct account_id)::int as n from tally.usage_hourly_totals'));
    expect(all.rows[0].n).toBeGreaterThan(1);
    await expect(as(db.pool, anon, (c) => c.query('select 1 from tally.usage_hourly_totals limit 1'))).rejects.toMatchObject({ code: '42501' });
    await expect(as(db.pool, user(owner), (c) => c.query('delete from tally.usage_hourly_totals'))).rejects.toMatchObject({ code: '42501' });
    await expect(as(db.pool, service, (c) => c.query('update tally.usage_hourly_totals set requests = 0'))).rejects.toMatchObject({ code: '42501' });
  });
});

describe('an installation upgraded to migration 38', () => {
  let old: TestDatabase;
  let ids: string[] = [];
  beforeAll(async () => {
    old = await emptyDatabase();
    const file = fs.readdirSync(new URL('../db/migrations/', import.meta.url)).find((f) => f.endsWith('_hourly-totals.sql'))!;
    await migrateBefore(old.url, file);
    await old.pool.query("update tally.settings set value = '100 years' where name in ('retention.events', 'retention.hourly')");
    ids = [
      (await old.pool.query("select id from tally.create_account(p_name => 'Old UTC')")).rows[0].id,
      (await old.pool.query("select id from tally.create_account(p_name => 'Old Kolkata', p_timezone => 'Asia/Kolkata')")).rows[0].id,
    ];
    const at = (hoursAgo: number, minute: number) => new Date(Date.now() - hoursAgo * 3_600_000 + minute * 60_000).toISOString();
    const wire = (account: string, t: string, i: number) => ({
      account_id: account, event_type: ['api_request', 'llm_call'][i % 2], occurred_at: t, provider: [undefined, 'openai', 'anthropic'][i % 3],
      status_code: [200, 404, undefined, 503][i % 4], latency_ms: i % 5 === 0 ? undefined : i * 7, cost_usd: i % 3 === 1 ? '0.25' : undefined,
    });
    const times = [900, 300, 48, 20, 5, 2].flatMap((h) => [at(h, 1), at(h, 17), at(h, 44)]);
    const events = ids.flatMap((a) => times.map((t, i) => wire(a, t, i)));
    expect((await old.pool.query('select tally.record_events(p_events => $1::jsonb) as r', [JSON.stringify(events)])).rows[0].r).toMatchObject({ accepted: events.length });
    await drain(old.pool);
    // some not folded when the migration runs
    await old.pool.query('select tally.record_events(p_events => $1::jsonb)', [JSON.stringify(ids.map((a, i) => wire(a, at(1, 3), i)))]);
    await runMigrations(old.url);
    await drain(old.pool);
  });
  afterAll(async () => {
    await old?.drop();
  });

  it('gets the totals of the hours it already holds, and folds the rest into them', async () => {
    expect(await differences(old.pool, ids)).toEqual([]);
    expect(await unequalToHourlyRows(old.pool, ids)).toBe(0);
    const { rows } = await old.pool.query(
      `select (select count(*)::int from tally.usage_hourly_totals where account_id = any($1::uuid[])) as stored,
              (select count(distinct (account_id, date_trunc('hour', occurred_at, 'UTC')))::int from tally.events where account_id = any($1::uuid[])) as hours`,
      [ids],
    );
    expect(rows[0].stored).toBe(rows[0].hours);
    expect(rows[0].stored).toBeGreaterThanOrEqual(12);
  });
});
