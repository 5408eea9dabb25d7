/**
 * One source for the rollup metrics: tally._rollup_metrics() and tally._rollup_grains() are
 * the only lists; the fold, verify_rollups and the three *_live views are generated from
 * them. Adding a metric is one row there plus tally._apply_rollup_metrics().
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';
import { createAccount, recordEvents } from './helpers/ledger.ts';

let db: TestDatabase;
beforeAll(async () => {
  db = await migratedDatabase();
});
afterAll(async () => {
  await db?.drop();
});

const GRAINS = ['hourly', 'daily', 'monthly'] as const;

async function columns(relation: string): Promise<string[]> {
  const { rows } = await db.pool.query(
    `select attname || ' ' || format_type(atttypid, atttypmod) as c from pg_attribute
      where attrelid = $1::regclass and attnum > 0 and not attisdropped order by attnum`,
    [relation],
  );
  return rows.map((r) => r.c);
}

async function drain(): Promise<void> {
  while ((await db.pool.query('select tally.run_rollups() as r')).rows[0].r.more);
}

describe('the metric list', () => {
  it('is every metric column of the three tables and live views, in order, with the same types', async () => {
    const { rows } = await db.pool.query('select name, sql_type from tally._rollup_metrics() order by ord');
    const metrics = rows.map((r) => `${r.name} ${r.sql_type}`);
    expect(metrics).toContain('unpriced bigint');
    for (const grain of GRAINS) {
      const table = await columns(`tally.usage_${grain}`);
      expect(table.slice(9), grain).toEqual(metrics);
      expect(await columns(`tally.usage_${grain}_live`), `${grain} live`).toEqual(table);
    }
  });

  it('the live views call no SQL helper per row: expressions are in the view text, and only events_tail() is called', async () => {
    for (const grain of GRAINS) {
      const { rows } = await db.pool.query(`select pg_get_viewdef($1::regclass) as d`, [`tally.usage_${grain}_live`]);
      const calls = [...(rows[0].d as string).matchAll(/tally\.(\w+)\(/g)].map((m) => m[1]);
      expect([...new Set(calls)], grain).toEqual(['events_tail']);
    }
  });

  it('the generated dimension key and histogram slots equal tally._dim_key and width_bucket', async () => {
    const { rows } = await db.pool.query(`select format($q$
        select count(*) filter (where %s <> tally._dim_key(t.api_key_id, t.event_type, t.provider, t.model, t.endpoint, t.file_type))::int as bad,
               count(*)::int as n
        from (values (null::uuid, 'a', null, 'm', '/x', null),
                     (gen_random_uuid(), 'llm|call', 'p:1', '', 'e', 'image/png'),
                     (null, 'a|b', 'c', null, null, null), (null, 'a', 'b|c', null, null, null)) as t(api_key_id, event_type, provider, model, endpoint, file_type)
      $q$, tally._dim_key_sql('t')) as q`);
    const dims = await db.pool.query(rows[0].q);
    expect(dims.rows[0]).toEqual({ bad: 0, n: 4 });

    const slots = await db.pool.query(`select tally._hist_slot_conditions('v') as c`);
    const cases = (slots.rows[0].c as string[]).map((cond, k) => `case when ${cond} then ${k} end`).join(', ');
    const { rows: bad } = await db.pool.query(`
      select v, width_bucket(v, tally.latency_buckets()) as expected, coalesce(${cases}) as got
      from (select b + d as v from unnest(tally.latency_buckets()) b, (values (-1), (0), (1)) x(d)
            union all select 0 union all select 2147483647) vs
      where width_bucket(v, tally.latency_buckets()) is distinct from coalesce(${cases})`);
    expect(bad).toEqual([]);
  });

  it('the live views keep their plan: filters on account_id and bucket reach the primary key, plus the tail', async () => {
    const account = await createAccount(db.pool, 'Plan', null, 'Asia/Kolkata');
    await recordEvents(db.pool, Array.from({ length: 50 }, (_, i) => ({ account_id: account, event_type: 'api', latency_ms: i })));
    await drain();
    await recordEvents(db.pool, [{ account_id: account, event_type: 'api' }]);
    const client = await db.pool.connect();
    try {
      // with sequential scans off, only a filter pushed into the stored branch can reach the index
      await client.query('set enable_seqscan = off');
      for (const grain of GRAINS) {
        const { rows } = await client.query(
          `explain (costs off) select * from tally.usage_${grain}_live where account_id = $1 and bucket >= now() - interval '7 days'`,
          [account],
        );
        const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
        expect(plan, grain).toMatch(new RegExp(`Index (Only )?Scan using usage_${grain}_pkey on usage_${grain} u|Bitmap Index Scan on usage_${grain}_pkey`));
        expect(plan, grain).toMatch(/Index Cond: \(\(account_id = /);
        expect(plan, grain).toMatch(/Function Scan on events_tail e/);
        expect(plan, grain).not.toMatch(/Seq Scan on usage_/);
      }
    } finally {
      client.release();
    }
  });

  it('adding a metric is one row in the list: fold, verify, recompute and the live views all carry it', async () => {
    const account = await createAccount(db.pool, 'New metric', null, 'America/New_York');
    const wire = (n: number, hoursAgo: number) =>
      Array.from({ length: n }, (_, i) => ({
        account_id: account,
        event_type: i % 2 ? 'llm_call' : 'api',
        status_code: i % 3 ? 200 : 500,
        occurred_at: new Date(Date.now() - hoursAgo * 3_600_000 - i * 1000).toISOString(),
      }));
    await recordEvents(db.pool, wire(30, 30));
    await drain();

    // a new metric: events with a server error. Copy the list, add one row, apply, backfill.
    const { rows } = await db.pool.query(`select pg_get_functiondef('tally._rollup_metrics()'::regprocedure) as def`);
    const def = (rows[0].def as string).replace(
      /\)\s*\)\s*as m\(ord/,
      `),\n      (99, 'server_errors', 'bigint', 'sum', 'CASE WHEN e.status_code >= 500 THEN 1 ELSE 0 END', 'count(*) FILTER (WHERE e.status_code >= 500)', '{status_code}')\n    ) as m(ord`,
    );
    expect(def).toContain('server_errors');
    await db.pool.query(def);
    await db.pool.query('select tally._apply_rollup_metrics()');
    const backfill = await db.pool.query(`select tally._backfill_rollup_metric('server_errors') as r`);
    expect(backfill.rows[0].r.daily).toBeGreaterThan(0);

    await recordEvents(db.pool, wire(20, 1)); // folded by the next run
    await drain();
    await recordEvents(db.pool, wire(9, 0)); // the tail
    const direct = async (grain: string, bucket: string) =>
      (
        await db.pool.query(
          `select ${bucket}::text as b, count(*) filter (where status_code >= 500)::int as n
             from tally.events e join tally.accounts a on a.id = e.account_id where e.account_id = $1 group by 1 order by 1`,
          [account],
        )
      ).rows.map((r) => `${grain} ${r.b} ${r.n}`);
    const viewed = async (grain: string, live: boolean) =>
      (
        await db.pool.query(
          `select bucket::text as b, sum(server_errors)::int as n from tally.usage_${grain}${live ? '_live' : ''} where account_id = $1 group by 1 order by 1`,
          [account],
        )
      ).rows.map((r) => `${grain} ${r.b} ${r.n}`);
    const buckets = {
      hourly: `date_trunc('hour', e.occurred_at, 'UTC')`,
      daily: `(e.occurred_at at time zone a.timezone)::date`,
      monthly: `date_trunc('month', e.occurred_at at time zone a.timezone)::date`,
    };
    for (const grain of GRAINS) expect(await viewed(grain, true)).toEqual(await direct(grain, buckets[grain]));
    await drain();
    for (const grain of GRAINS) expect(await viewed(grain, false)).toEqual(await direct(grain, buckets[grain]));

    const range = [new Date(Date.now() - 3 * 86_400_000), new Date(Date.now() + 3_600_000)];
    const verify = async () => (await db.pool.query('select grain, expected, actual from tally.verify_rollups($1, $2)', range)).rows;
    expect(await verify()).toEqual([]);
    await db.pool.query('update tally.usage_monthly set server_errors = server_errors + 1 where account_id = $1', [account]);
    const found = await verify();
    expect(found.length).toBeGreaterThan(0);
    expect(new Set(found.map((r) => `${r.grain} ${r.actual.server_errors - r.expected.server_errors}`))).toEqual(new Set(['monthly 1']));
    await db.pool.query('select tally.recompute_rollups($1, $2)', range);
    expect(await verify()).toEqual([]);
  });
});
