/**
 * reprice leaves the aggregates exact: it rebuilds, in its own transaction, exactly the
 * hourly, daily and monthly buckets its changed events were counted in, so verify_rollups
 * finds nothing and the tables and live views show the new cost at once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';
import { createAccount, DAY, HOUR, recordEvents } from './helpers/ledger.ts';
import { as, service } from './helpers/personas.ts';

let db: TestDatabase;
beforeAll(async () => {
  db = await migratedDatabase();
});
afterAll(async () => {
  await db?.drop();
});

const asService = (sql: string, values: unknown[] = []) => as(db.pool, service, async (c) => (await c.query(sql, values)).rows);

const setPrice = (model: string, perMtok: number, from: string) =>
  asService(
    `select * from tally.set_model_price(p_provider => 'p', p_model => $1::text, p_input_usd_per_mtok => $2::numeric,
                                         p_output_usd_per_mtok => $2::numeric, p_effective_from => $3::timestamptz)`,
    [model, perMtok, from],
  );

/** xmin of every aggregate row of the account, per grain and bucket: a rebuilt row gets a new one. */
async function rowVersions(account: string): Promise<Record<string, string>> {
  const { rows } = await db.pool.query(
    `select 'hourly' as grain, bucket::text, xmin::text from tally.usage_hourly where account_id = $1
     union all select 'daily', bucket::text, xmin::text from tally.usage_daily where account_id = $1
     union all select 'monthly', bucket::text, xmin::text from tally.usage_monthly where account_id = $1`,
    [account],
  );
  return Object.fromEntries(rows.map((r) => [`${r.grain} ${r.bucket}`, r.xmin]));
}

async function costs(account: string, table: string): Promise<Record<string, string>> {
  const { rows } = await db.pool.query(`select bucket::text, sum(cost_usd)::text as cost from tally.${table} where account_id = $1 group by 1 order by 1`, [account]);
  return Object.fromEntries(rows.map((r) => [r.bucket, r.cost]));
}

describe('reprice', () => {
  it('rebuilds exactly the buckets of the changed, folded events; verify is clean; tables and live views show the new cost', async () => {
    const account = await createAccount(db.pool, 'Repriced', null, 'America/New_York');
    // a UTC day 20 days back, so every bucket is within the hourly retention
    const day = new Date(Math.floor((Date.now() - 20 * DAY) / DAY) * DAY);
    const at = (ms: number) => new Date(day.getTime() + ms).toISOString();
    await setPrice('m', 1, at(-10 * DAY));
    await setPrice('other', 1, at(-10 * DAY));
    const llm = (model: string, occurredAt: string, extra: Record<string, unknown> = {}) => ({
      account_id: account, event_type: 'llm', provider: 'p', model, tokens_in: 1_000_000, occurred_at: occurredAt, ...extra,
    });
    expect(
      await recordEvents(db.pool, [
        llm('m', at(3 * HOUR + 30 * 60_000)), // 03:30 UTC: the previous local day in New York
        llm('m', at(15 * HOUR + 10 * 60_000)), // 15:10 UTC: the local day of the UTC day
        llm('other', at(2 * DAY + 10 * HOUR)), // another model: not repriced
        llm('m', at(3 * DAY + 10 * HOUR), { cost_usd: '7' }), // a given cost: kept
      ]),
    ).toMatchObject({ accepted: 4, rejected: [] });
    await asService('select tally.run_rollups()');
    // folded after the reprice, not rebuilt: the live views read it raw meanwhile
    expect(await recordEvents(db.pool, [llm('m', at(4 * DAY + 10 * HOUR))])).toMatchObject({ accepted: 1 });

    const before = await rowVersions(account);
    expect(Object.values(await costs(account, 'usage_monthly'))).toEqual(['10.000000000000']);

    await setPrice('m', 2, at(-10 * DAY));
    const [{ r }] = await asService('select tally.reprice(p_from => $1::timestamptz, p_to => $2::timestamptz) as r', [at(-DAY), at(10 * DAY)]);
    expect(r).toEqual({
      repriced: 3,
      from: expect.any(String),
      to: expect.any(String),
      rebuilt_buckets: { hourly: 2, daily: 2, monthly: 1 },
    });

    // exactly those rows were rewritten: the two hours, the two local days, the month
    const after = await rowVersions(account);
    const rewritten = Object.keys(before).filter((k) => after[k] !== before[k]).sort();
    const hour = (ms: number) => new Date(day.getTime() + ms).toISOString().slice(0, 13).replace('T', ' ');
    const localDay = (ms: number) =>
      new Intl.DateTimeFormat('en-CA', { timeZone: 'America/New_York', year: 'numeric', month: '2-digit', day: '2-digit' }).format(new Date(day.getTime() + ms));
    expect(rewritten).toHaveLength(5);
    expect(rewritten.filter((k) => k.startsWith('hourly')).map((k) => k.slice(7, 20))).toEqual([hour(3 * HOUR), hour(15 * HOUR)]);
    expect(rewritten.filter((k) => k.startsWith('daily'))).toEqual([`daily ${localDay(3 * HOUR + 30 * 60_000)}`, `daily ${localDay(15 * HOUR)}`]);
    expect(rewritten.filter((k) => k.startsWith('monthly'))).toHaveLength(1);
    expect(Object.keys(after).sort()).toEqual(Object.keys(before).sort());

    // the aggregates are exact at once: nothing for verify, the new cost everywhere
    const month = [at(-40 * DAY), at(40 * DAY)];
    expect(await asService('select * from tally.verify_rollups($1::timestamptz, $2::timestamptz)', month)).toEqual([]);
    const { rows: events } = await db.pool.query(
      `select sum(cost_usd)::text as cost from tally.events where account_id = $1 and id <= (select watermark from tally.rollup_state)`,
      [account],
    );
    expect(events[0].cost).toBe('12.000000000000'); // 2 + 2 + 1 + 7
    expect(Object.values(await costs(account, 'usage_monthly'))).toEqual(['12.000000000000']);
    expect(Object.values(await costs(account, 'usage_daily')).reduce((s, c) => s + Number(c), 0)).toBe(12);
    expect(Object.values(await costs(account, 'usage_monthly_live'))).toEqual(['14.000000000000']); // + the unfolded event at 2
    expect(Object.values(await costs(account, 'usage_daily_live')).reduce((s, c) => s + Number(c), 0)).toBe(14);

    // the next run folds the unfolded event with its new cost; still exact
    await asService('select tally.run_rollups()');
    expect(Object.values(await costs(account, 'usage_monthly'))).toEqual(['14.000000000000']);
    expect(await asService('select * from tally.verify_rollups($1::timestamptz, $2::timestamptz)', month)).toEqual([]);

    // nothing changed: nothing rebuilt
    const [{ r: again }] = await asService('select tally.reprice(p_from => $1::timestamptz, p_to => $2::timestamptz) as r', [at(-DAY), at(10 * DAY)]);
    expect(again).toMatchObject({ repriced: 0, rebuilt_buckets: { hourly: 0, daily: 0, monthly: 0 } });
  });

  it('does not rebuild the buckets of void events', async () => {
    const account = await createAccount(db.pool, 'Void repriced');
    const at = new Date(Math.floor((Date.now() - 10 * DAY) / DAY) * DAY + 5 * HOUR).toISOString();
    await setPrice('v', 1, new Date(Date.now() - 30 * DAY).toISOString());
    await recordEvents(db.pool, [{ account_id: account, event_type: 'llm', provider: 'p', model: 'v', tokens_in: 1_000_000, occurred_at: at }]);
    await asService('select tally.run_rollups()');
    const [{ id }] = (await db.pool.query('select id::text from tally.events where account_id = $1', [account])).rows;
    await asService("select tally.void_events(p_event_ids => array[$1::bigint], p_reason => 'test')", [id]);
    await setPrice('v', 3, new Date(Date.now() - 30 * DAY).toISOString());
    const [{ r }] = await asService('select tally.reprice(p_from => $1::timestamptz, p_to => now()) as r', [new Date(Date.now() - 20 * DAY).toISOString()]);
    expect(r).toMatchObject({ repriced: 1, rebuilt_buckets: { hourly: 0, daily: 0, monthly: 0 } });
  });

  it('needs READ COMMITTED, like the other rebuilds', async () => {
    const c = await db.pool.connect();
    try {
      await c.query('begin isolation level repeatable read');
      await c.query('set local role service_role');
      await expect(c.query("select tally.reprice(now() - interval '1 day', now())")).rejects.toMatchObject({ code: '22023', hint: 'invalid_parameter' });
    } finally {
      await c.query('rollback');
      c.release();
    }
  });
});
