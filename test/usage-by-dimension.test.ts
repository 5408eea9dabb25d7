/**
 * The rows by dimension of migration 35 (tally.usage_daily_by_dimension and
 * tally.usage_monthly_by_dimension): folded by run_rollups equal to a direct GROUP BY of the
 * events written here; the rows of any one dimension of a bucket sum to the bucket's totals;
 * verify_rollups reports a tampered, missing or stray row (grains daily_by_dimension and
 * monthly_by_dimension, with dimension and value); void_events, reprice and
 * recompute_rollups rebuild them; apply_retention drops the daily ones with retention.daily
 * and keeps the monthly ones; members read only their accounts' rows. And an installation
 * upgraded to migration 35 gets them for the buckets it already holds.
 */
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMigrations } from '../src/database/migrate.ts';
import { emptyDatabase, migratedDatabase, type TestDatabase } from './helpers/db.ts';
import { migrateBefore } from './helpers/partial-migrate.ts';
import { randomEvents } from './helpers/random-events.ts';
import { createAccount, createApiKey, recordEvents, setSetting } from './helpers/ledger.ts';
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

async function drain(chunk: number | null = null): Promise<void> {
  while ((await db.pool.query('select tally.run_rollups(p_max_events => $1::bigint) as r', [chunk])).rows[0].r.more);
}

const METRICS = ['requests', 'successful', 'failed', 'cached', 'files', 'bytes', 'tokens_in', 'tokens_out', 'cost_usd', 'potential_cost_usd', 'quantity', 'latency_count', 'latency_sum', 'latency_max', 'latency_hist', 'unpriced'];

/**
 * The rows by dimension computed straight from the events (voided ones left out): one row
 * per local day (or month) and value of each dimension, the latency histogram counted per
 * slot of tally.latency_buckets() (width_bucket: 0 below the first bound, 41 from the last).
 */
function direct(grain: 'daily' | 'monthly', where = ''): string {
  const bucket = grain === 'daily' ? '(e.occurred_at at time zone a.timezone)::date' : "date_trunc('month', e.occurred_at at time zone a.timezone)::date";
  return `
    with d as (
      select e.account_id, ${bucket} as bucket, x.dimension, x.value, e.success, e.cached, e.files, e.bytes, e.tokens_in, e.tokens_out,
             e.cost_usd, e.potential_cost_usd, e.quantity, e.latency_ms
      from tally.events e join tally.accounts a on a.id = e.account_id
      cross join lateral (values ('event_type', e.event_type), ('api_key', e.api_key_id::text), ('provider', e.provider),
                                 ('model', e.model), ('endpoint', e.endpoint), ('file_type', e.file_type),
                                 ('status_class', case when e.status_code is null then null else (e.status_code / 100)::text || 'xx' end)) x(dimension, value)
      where e.account_id = any($1::uuid[]) ${where}
        and not exists (select 1 from tally.event_voids v where v.account_id = e.account_id and v.event_id = e.id)
    ),
    slots as (
      select account_id, bucket, dimension, value, width_bucket(latency_ms, tally.latency_buckets()) as k, count(*) as n
      from d where latency_ms is not null group by 1, 2, 3, 4, 5
    ),
    groups as (
      select account_id, bucket, dimension, value,
             count(*) as requests, count(*) filter (where success) as successful, count(*) filter (where not success) as failed,
             count(*) filter (where cached) as cached, coalesce(sum(files), 0) as files, coalesce(sum(bytes), 0) as bytes,
             coalesce(sum(tokens_in), 0) as tokens_in, coalesce(sum(tokens_out), 0) as tokens_out,
             coalesce(sum(cost_usd), 0) as cost_usd, coalesce(sum(potential_cost_usd), 0) as potential_cost_usd,
             sum(quantity) as quantity, count(latency_ms) as latency_count, coalesce(sum(latency_ms), 0) as latency_sum,
             max(latency_ms) as latency_max,
             count(*) filter (where (tokens_in is not null or tokens_out is not null) and (cost_usd is null or potential_cost_usd is null)) as unpriced
      from d group by 1, 2, 3, 4
    )
    select g.*, (select array_agg(coalesce(s.n, 0)::bigint order by k.k)
                 from generate_series(0, 41) k(k)
                 left join slots s on s.account_id = g.account_id and s.bucket = g.bucket and s.dimension = g.dimension
                                  and s.value is not distinct from g.value and s.k = k.k) as latency_hist
    from groups g`;
}

/** The rows of a table by dimension that differ from the direct computation (either side missing, or any metric). */
async function differences(grain: 'daily' | 'monthly', ids = accounts): Promise<unknown[]> {
  const { rows } = await db.pool.query(
    `with x as (${direct(grain)}),
          y as (select * from tally.usage_${grain}_by_dimension where account_id = any($1::uuid[]))
     select coalesce(x.account_id, y.account_id) as account_id, coalesce(x.bucket, y.bucket)::text as bucket,
            coalesce(x.dimension, y.dimension) as dimension, coalesce(x.value, y.value) as value, x.requests as expected, y.requests as actual
     from x full join y on y.account_id = x.account_id and y.bucket = x.bucket and y.dimension = x.dimension and y.value is not distinct from x.value
     where ${METRICS.map((m) => `x.${m} is distinct from y.${m}`).join(' or ')}
     order by 1, 2, 3, 4`,
    [ids],
  );
  return rows;
}

async function count(table: string, ids = accounts): Promise<number> {
  return (await db.pool.query(`select count(*)::int as n from tally.${table} where account_id = any($1::uuid[])`, [ids])).rows[0].n;
}

const verify = async (from = '2026-01-01', to = '2026-12-31') =>
  (await db.pool.query('select grain, account_id, bucket, dim_key, dimension, value, expected, actual from tally.verify_rollups($1::timestamptz, $2::timestamptz) order by 1, 2, 3, 5, 6', [from, to])).rows;

/** Events around both of New York's DST changes. */
const events = (keys: Record<string, string[]>, n: number, seed: number) =>
  randomEvents({ keys, n, seed, windows: [Date.parse('2026-02-25T00:00:00Z'), Date.parse('2026-10-28T00:00:00Z')], days: 14 });

describe('rows by dimension', () => {
  let keys: Record<string, string[]> = {};
  beforeAll(async () => {
    accounts = [
      await createAccount(db.pool, 'Dims UTC'),
      await createAccount(db.pool, 'Dims Kolkata', null, 'Asia/Kolkata'),
      await createAccount(db.pool, 'Dims New York', null, 'America/New_York'),
    ];
    keys = Object.fromEntries(await Promise.all(accounts.map(async (a) => [a, [(await createApiKey(db.pool, a, 'k1')).id, (await createApiKey(db.pool, a, 'k2')).id]])));
    const result = await recordEvents(db.pool, events(keys, 600, 35));
    expect(result).toMatchObject({ accepted: 600, rejected: [] });
    await drain(97); // several runs, so buckets are merged by ON CONFLICT too
  });

  it('are folded equal to a direct GROUP BY of the events, daily and monthly, in every zone; verify_rollups finds nothing', async () => {
    expect(await count('usage_daily_by_dimension')).toBeGreaterThan(300);
    expect(await count('usage_monthly_by_dimension')).toBeGreaterThan(50);
    expect(await differences('daily')).toEqual([]);
    expect(await differences('monthly')).toEqual([]);
    expect(await verify()).toEqual([]);
    // every dimension of every bucket is there, absent values as NULL rows
    const { rows } = await db.pool.query(
      `select dimension, count(*) filter (where value is null)::int > 0 as has_null from tally.usage_daily_by_dimension
       where account_id = any($1::uuid[]) group by 1 order by 1`,
      [accounts],
    );
    expect(rows).toEqual(['api_key', 'endpoint', 'event_type', 'file_type', 'model', 'provider', 'status_class'].map((d) => ({ dimension: d, has_null: d !== 'event_type' })));
  });

  it("the rows of any one dimension of a bucket sum to the bucket's totals (usage_daily, usage_monthly)", async () => {
    for (const grain of ['daily', 'monthly']) {
      const sums = (table: string, by: string) => `
        select account_id, bucket, ${by} as dimension, ${METRICS.filter((m) => m !== 'latency_hist' && m !== 'latency_max').map((m) => `sum(${m}) as ${m}`).join(', ')},
               max(latency_max) as latency_max,
               (select array_agg(s order by k) from (select k, sum(h.c)::bigint as s from tally.${table} t2, unnest(t2.latency_hist) with ordinality h(c, k)
                                                     where t2.account_id = t.account_id and t2.bucket = t.bucket ${by === 'dimension' ? 'and t2.dimension = t.dimension' : ''}
                                                     group by k) z) as latency_hist
        from tally.${table} t where account_id = any($1::uuid[]) group by account_id, bucket${by === 'dimension' ? ', dimension' : ''}`;
      const { rows } = await db.pool.query(
        `with dims as (${sums(`usage_${grain}_by_dimension`, 'dimension')}),
              totals as (${sums(`usage_${grain}`, 'null::text')})
         select d.account_id, d.bucket::text, d.dimension from dims d left join totals t on t.account_id = d.account_id and t.bucket = d.bucket
         where ${METRICS.map((m) => `d.${m} is distinct from t.${m}`).join(' or ')}
         union all
         select t.account_id, t.bucket::text, 'missing' from totals t
         where (select count(distinct dimension) from tally.usage_${grain}_by_dimension u where u.account_id = t.account_id and u.bucket = t.bucket) <> 7`,
        [accounts],
      );
      expect(rows, grain).toEqual([]);
    }
  });

  it('verify_rollups reports a tampered, a missing and a stray row (daily_by_dimension, monthly_by_dimension); recompute_rollups repairs them', async () => {
    const [utc] = accounts as [string];
    const { rows: pick } = await db.pool.query(
      `select bucket::text, requests::int from tally.usage_daily_by_dimension
       where account_id = $1 and dimension = 'provider' and value = 'openai' order by bucket limit 1`,
      [utc],
    );
    const day = pick[0].bucket as string;
    const requests = pick[0].requests as number;
    await db.pool.query(`update tally.usage_daily_by_dimension set requests = requests + 1 where account_id = $1 and bucket = $2 and dimension = 'provider' and value = 'openai'`, [utc, day]);
    await db.pool.query(`update tally.usage_daily_by_dimension set latency_max = 99999999 where account_id = $1 and bucket = $2 and dimension = 'provider' and value is null`, [utc, day]);
    const { rows: gone } = await db.pool.query(
      `delete from tally.usage_monthly_by_dimension where account_id = $1 and bucket = '2026-03-01' and dimension = 'endpoint' and value = '/v1/b' returning requests::int`,
      [utc],
    );
    expect(gone).toHaveLength(1);
    await db.pool.query(
      `insert into tally.usage_daily_by_dimension (account_id, bucket, dimension, value, requests, successful, failed, cached, files, bytes, tokens_in, tokens_out,
         cost_usd, potential_cost_usd, quantity, latency_count, latency_sum, latency_max, latency_hist, unpriced)
       values ($1, '2026-06-15', 'model', 'ghost', 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, null, array_fill(0::bigint, array[42]), 0)`,
      [utc],
    );
    const found = await verify();
    expect(found.map((r) => [r.grain, r.account_id, r.bucket, r.dim_key, r.dimension, r.value])).toEqual([
      ['daily_by_dimension', utc, day, null, 'provider', 'openai'],
      ['daily_by_dimension', utc, day, null, 'provider', null],
      ['daily_by_dimension', utc, '2026-06-15', null, 'model', 'ghost'],
      ['monthly_by_dimension', utc, '2026-03-01', null, 'endpoint', '/v1/b'],
    ]);
    expect([found[0].expected.requests, found[0].actual.requests]).toEqual([requests, requests + 1]);
    expect(found[1].actual.latency_max).toBe(99999999);
    expect(found[2].expected).toBeNull();
    expect([found[3].expected.requests, found[3].actual]).toEqual([gone[0].requests, null]);
    // the direct computation sees the same four rows
    expect((await differences('daily')).map((r) => (r as { value: string }).value)).toEqual(['openai', null, 'ghost']);
    expect((await differences('monthly')).map((r) => (r as { value: string }).value)).toEqual(['/v1/b']);
    // a verification of a range that holds none of them is clean
    expect(await verify('2026-05-01', '2026-05-31')).toEqual([]);

    const { rows: recomputed } = await db.pool.query(`select tally.recompute_rollups('2026-01-01'::timestamptz, '2026-12-31'::timestamptz) as r`);
    expect(recomputed[0].r).toBeTruthy();
    expect(await verify()).toEqual([]);
    expect(await differences('daily')).toEqual([]);
    expect(await differences('monthly')).toEqual([]);
  });

  it('void_events rebuilds the rows by dimension of the buckets its events were counted in (folded or not)', async () => {
    // more events, some left unfolded past the watermark
    expect(await recordEvents(db.pool, events(keys, 150, 36))).toMatchObject({ accepted: 150 });
    await drain();
    expect(await recordEvents(db.pool, events(keys, 50, 37))).toMatchObject({ accepted: 50 });
    const { rows } = await db.pool.query(
      `select id from tally.events where account_id = any($1::uuid[]) order by id desc limit 60`,
      [accounts],
    );
    const ids = rows.map((r) => r.id as string).filter((_, i) => i % 3 === 0); // 20: some unfolded, some folded
    const { rows: voided } = await as(db.pool, service, (c) =>
      c.query("select tally.void_events(p_event_ids => $1::bigint[], p_reason => 'test: void rebuilds dimension rows') as r", [ids]),
    );
    expect(voided[0].r).toMatchObject({ voided: 20 });
    // the folded ones are out of the rows now; the unfolded ones are skipped when folded
    const folded = await db.pool.query(
      `select count(*)::int as n from tally.events where id = any($1::bigint[]) and id <= (select watermark from tally.rollup_state)`,
      [ids],
    );
    expect(folded.rows[0].n).toBeGreaterThan(0);
    expect(folded.rows[0].n).toBeLessThan(20);
    await drain();
    expect(await differences('daily')).toEqual([]);
    expect(await differences('monthly')).toEqual([]);
    expect(await verify()).toEqual([]);
  });

  it('reprice rebuilds the rows by dimension with the new costs', async () => {
    const acct = await createAccount(db.pool, 'Reprice dims', null, 'Asia/Kolkata');
    const llm = (at: string) => ({ account_id: acct, event_type: 'llm_call', occurred_at: at, provider: 'acme', model: 'a-1', tokens_in: 1_000_000, tokens_out: 500_000 });
    expect(await recordEvents(db.pool, [llm('2026-03-10T18:29:00Z'), llm('2026-03-10T18:31:00Z'), llm('2026-03-31T18:30:00Z')])).toMatchObject({ accepted: 3 });
    await drain();
    const unpriced = async () =>
      (await db.pool.query(`select dimension, sum(unpriced)::int as unpriced, sum(cost_usd)::text as cost from tally.usage_daily_by_dimension where account_id = $1 group by 1 order by 1`, [acct])).rows;
    expect((await unpriced()).map((r) => [r.dimension, r.unpriced])).toEqual(
      ['api_key', 'endpoint', 'event_type', 'file_type', 'model', 'provider', 'status_class'].map((d) => [d, 3]),
    );
    await as(db.pool, service, (c) =>
      c.query("select tally.set_model_price(p_provider => 'acme', p_model => 'a-1', p_input_usd_per_mtok => 2, p_output_usd_per_mtok => 4, p_effective_from => '2026-01-01'::timestamptz)"),
    );
    await as(db.pool, service, (c) => c.query("select tally.reprice(p_from => '2026-03-01'::timestamptz, p_to => '2026-04-30'::timestamptz)"));
    // each event: 1 Mtok in at $2 + 0.5 Mtok out at $4 = $4
    expect((await unpriced()).map((r) => [r.dimension, r.unpriced, Number(r.cost)])).toEqual(
      ['api_key', 'endpoint', 'event_type', 'file_type', 'model', 'provider', 'status_class'].map((d) => [d, 0, 12]),
    );
    expect(await differences('daily', [acct])).toEqual([]);
    expect(await differences('monthly', [acct])).toEqual([]);
    const { rows } = await db.pool.query(
      `select bucket::text, requests::int, cost_usd::text from tally.usage_monthly_by_dimension where account_id = $1 and dimension = 'model' order by bucket`,
      [acct],
    );
    // 18:29Z and 18:31Z on Mar 10 are Mar 10 and Mar 11 in Kolkata; 18:30Z on Mar 31 is Apr 1
    expect(rows).toEqual([{ bucket: '2026-03-01', requests: 2, cost_usd: '8.000000000000' }, { bucket: '2026-04-01', requests: 1, cost_usd: '4.000000000000' }]);
  });

  it('apply_retention deletes the daily rows by dimension past retention.daily and keeps the monthly ones', async () => {
    const acct = await createAccount(db.pool, 'Retention dims');
    const at = (daysAgo: number) => new Date(Date.now() - daysAgo * 86_400_000).toISOString();
    expect(await recordEvents(db.pool, [at(70), at(65), at(5), at(1)].map((t) => ({ account_id: acct, event_type: 'api_request', occurred_at: t, provider: 'p' })))).toMatchObject({ accepted: 4 });
    await drain();
    const days = async () => (await db.pool.query(`select distinct bucket::text from tally.usage_daily_by_dimension where account_id = $1 order by 1`, [acct])).rows.map((r) => r.bucket);
    const months = async () =>
      (await db.pool.query(`select bucket::text, dimension, value, requests::int from tally.usage_monthly_by_dimension where account_id = $1 order by 1, 2, 3`, [acct])).rows;
    const before = await days();
    expect(before).toHaveLength(4);
    const monthly = await months();
    try {
      await setSetting(db.pool, 'retention.daily', '30 days');
      await as(db.pool, service, (c) => c.query('select tally.apply_retention()'));
      const floor = (await db.pool.query(`select (now() - interval '30 days')::date::text as d`)).rows[0].d as string;
      expect(await days()).toEqual(before.filter((d) => d >= floor));
      expect((await days()).length).toBe(2);
      expect(await months()).toEqual(monthly);
      // the daily rows went with them
      const { rows } = await db.pool.query(`select count(*)::int as n from tally.usage_daily where account_id = $1 and bucket < $2::date`, [acct, floor]);
      expect(rows[0].n).toBe(0);
    } finally {
      await setSetting(db.pool, 'retention.daily', '100 years');
    }
  });

  it("members read their accounts' rows only; anon reads none", async () => {
    const owner = await createUser(db.pool);
    const mine = await createAccount(db.pool, 'Mine', owner);
    expect(await recordEvents(db.pool, [{ account_id: mine, event_type: 'api_request', occurred_at: '2026-03-03T12:00:00Z' }])).toMatchObject({ accepted: 1 });
    await drain();
    for (const table of ['usage_daily_by_dimension', 'usage_monthly_by_dimension']) {
      const { rows } = await as(db.pool, user(owner), (c) => c.query(`select distinct account_id from tally.${table}`));
      expect(rows, table).toEqual([{ account_id: mine }]);
      const all = await as(db.pool, service, (c) => c.query(`select count(distinct account_id)::int as n from tally.${table}`));
      expect(all.rows[0].n).toBeGreaterThan(1);
      await expect(as(db.pool, anon, (c) => c.query(`select 1 from tally.${table} limit 1`))).rejects.toMatchObject({ code: '42501' });
      await expect(as(db.pool, user(owner), (c) => c.query(`delete from tally.${table}`))).rejects.toMatchObject({ code: '42501' });
    }
  });
});

describe('an installation upgraded to migration 35', () => {
  let old: TestDatabase;
  let ids: string[] = [];
  let watermark = '0'; // before the migration: the events above it were not folded yet
  beforeAll(async () => {
    old = await emptyDatabase();
    const file = fs.readdirSync(new URL('../db/migrations/', import.meta.url)).find((f) => f.endsWith('_usage-by-dimension.sql'))!;
    await migrateBefore(old.url, file);
    await old.pool.query("update tally.settings set value = '100 years' where name = 'retention.events'");
    ids = [
      (await old.pool.query("select id from tally.create_account(p_name => 'Old UTC')")).rows[0].id,
      (await old.pool.query("select id from tally.create_account(p_name => 'Old Kolkata', p_timezone => 'Asia/Kolkata')")).rows[0].id,
    ];
    const at = (daysAgo: number, hour: number) => new Date(Date.now() - daysAgo * 86_400_000 - hour * 3_600_000).toISOString();
    const wire = (account: string, t: string, i: number) => ({
      account_id: account, event_type: ['api_request', 'llm_call'][i % 2], occurred_at: t, provider: [undefined, 'openai', 'anthropic'][i % 3],
      endpoint: ['/a', undefined][i % 2], status_code: [200, 404, undefined, 503][i % 4], latency_ms: i % 5 === 0 ? undefined : i * 7, cost_usd: i % 3 === 1 ? '0.25' : undefined,
    });
    // buckets long before the raw events' retention cutoff set below (31 days), and recent ones
    const times = [400, 200, 90, 45, 20, 10, 2, 0].flatMap((d) => [at(d, 1), at(d, 13)]);
    const events = ids.flatMap((a) => times.map((t, i) => wire(a, t, i)));
    const recorded = (await old.pool.query('select tally.record_events(p_events => $1::jsonb) as r', [JSON.stringify(events)])).rows[0].r;
    expect(recorded).toMatchObject({ accepted: events.length });
    while ((await old.pool.query('select tally.run_rollups() as r')).rows[0].r.more);
    // one folded event voided, and a few not folded when the migration runs
    const victim = (await old.pool.query('select id from tally.events order by id limit 1 offset 5')).rows[0].id;
    await old.pool.query("select tally.void_events(array[$1::bigint], 'upgrade test')", [victim]);
    await old.pool.query('select tally.record_events(p_events => $1::jsonb)', [JSON.stringify(ids.map((a, i) => wire(a, at(1, 2), i)))]);
    await old.pool.query("update tally.settings set value = '31 days' where name = 'retention.events'");
    watermark = (await old.pool.query('select watermark::text as w from tally.rollup_state')).rows[0].w;
    await runMigrations(old.url);
    while ((await old.pool.query('select tally.run_rollups() as r')).rows[0].r.more);
  });
  afterAll(async () => {
    await old?.drop();
  });

  it('buckets whose raw events are kept are folded again from them (status classes included); older ones get their tuple dimensions from the stored rows and no status-class rows', async () => {
    const floor = (await old.pool.query("select now() - interval '31 days' as f")).rows[0].f as Date;
    for (const grain of ['daily', 'monthly'] as const) {
      const { rows } = await old.pool.query(
        `with x as (${direct(grain)}),
              y as (select * from tally.usage_${grain}_by_dimension where account_id = any($1::uuid[])),
              keyed as (
                select coalesce(x.account_id, y.account_id) as account_id, coalesce(x.bucket, y.bucket) as bucket,
                       coalesce(x.dimension, y.dimension) as dimension, coalesce(x.value, y.value) as value, x.requests as expected, y.requests as actual,
                       (${METRICS.map((m) => `x.${m} is distinct from y.${m}`).join(' or ')}) as differs
                from x full join y on y.account_id = x.account_id and y.bucket = x.bucket and y.dimension = x.dimension and y.value is not distinct from x.value)
         select k.*, k.bucket::text as bucket_text, (k.bucket::timestamp at time zone a.timezone) >= $2::timestamptz as kept
         from keyed k join tally.accounts a on a.id = k.account_id where k.differs order by 1, 2, 3, 4`,
        [ids, floor],
      );
      // only the old buckets differ, and only by their status-class rows: missing, or (for an
      // old bucket that the events not yet folded at the upgrade fell into: a local month
      // starting just before the cutoff) counting exactly those events
      const { rows: late } = await old.pool.query(
        `select account_id, bucket::text as bucket, value, requests::int as n from (${direct(grain, 'and e.id > $2::bigint')}) l where l.dimension = 'status_class'`,
        [ids, watermark],
      );
      const lateCount = (r: { account_id: string; bucket_text: string; value: string | null }) =>
        late.find((l) => l.account_id === r.account_id && l.bucket === r.bucket_text && l.value === r.value)?.n;
      expect(rows.filter((r) => r.kept), grain).toEqual([]);
      expect(rows.length, grain).toBeGreaterThan(0);
      expect(
        rows.filter((r) => !(r.dimension === 'status_class' && (r.actual === null || Number(r.actual) === lateCount(r)))),
        grain,
      ).toEqual([]);
      // the stored old buckets still hold every other dimension, summing to the bucket's totals
      // (status classes: in the buckets folded again, the others hold only the late events)
      const { rows: sums } = await old.pool.query(
        `select u.dimension, bool_and(u.requests = t.requests) as equal, count(*)::int as buckets
         from (select account_id, bucket, dimension, sum(requests) as requests from tally.usage_${grain}_by_dimension where account_id = any($1::uuid[]) group by 1, 2, 3) u
         join (select account_id, bucket, sum(requests) as requests from tally.usage_${grain} group by 1, 2) t using (account_id, bucket)
         join tally.accounts a on a.id = u.account_id
         where u.dimension <> 'status_class' or (u.bucket::timestamp at time zone a.timezone) >= $2::timestamptz
         group by 1 order by 1`,
        [ids, floor],
      );
      expect(sums.map((s) => [s.dimension, s.equal])).toEqual(
        ['api_key', 'endpoint', 'event_type', 'file_type', 'model', 'provider', 'status_class'].map((d) => [d, true]),
      );
      expect(sums.find((s) => s.dimension === 'status_class').buckets).toBeLessThan(sums.find((s) => s.dimension === 'event_type').buckets);
    }
  });
});
