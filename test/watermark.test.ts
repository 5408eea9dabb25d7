/**
 * tally.rollup_watermark() tells the event count of all tenants together, so it is for
 * service callers only; members still get exact live views, with the tail of their own
 * accounts only.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';
import { anon, as, createUser, service, user } from './helpers/personas.ts';

let db: TestDatabase;
let alice: string;
let a: string;
let b: string;
beforeAll(async () => {
  db = await migratedDatabase();
  alice = await createUser(db.pool);
  a = await as(db.pool, service, async (c) => (await c.query("select id from tally.create_account(p_name => 'A', p_owner_id => $1)", [alice])).rows[0].id);
  b = await as(db.pool, service, async (c) => (await c.query("select id from tally.create_account(p_name => 'B')")).rows[0].id);
  const events = [
    ...Array.from({ length: 3 }, () => ({ account_id: a, event_type: 'api_request' })),
    ...Array.from({ length: 5 }, () => ({ account_id: b, event_type: 'api_request' })),
  ];
  await as(db.pool, service, (c) => c.query('select tally.record_events($1::jsonb)', [JSON.stringify(events)]));
  await as(db.pool, service, (c) => c.query('select tally.run_rollups()'));
  // a tail past the watermark: 2 more for A, 4 more for B
  const tail = [
    ...Array.from({ length: 2 }, () => ({ account_id: a, event_type: 'api_request' })),
    ...Array.from({ length: 4 }, () => ({ account_id: b, event_type: 'api_request' })),
  ];
  await as(db.pool, service, (c) => c.query('select tally.record_events($1::jsonb)', [JSON.stringify(tail)]));
});
afterAll(async () => {
  await db?.drop();
});

describe('the rollup watermark', () => {
  it('is refused to members and anon (42501), given to services', async () => {
    await expect(as(db.pool, user(alice), (c) => c.query('select tally.rollup_watermark()'))).rejects.toMatchObject({ code: '42501' });
    await expect(as(db.pool, anon, (c) => c.query('select tally.rollup_watermark()'))).rejects.toMatchObject({ code: '42501' });
    const { rows } = await as(db.pool, service, (c) => c.query('select tally.rollup_watermark() as w'));
    expect(Number(rows[0].w)).toBeGreaterThan(0);
  });

  it('members still read exact live views, made of their own accounts\' tail only', async () => {
    const sum = (rows: { account_id: string; requests: string }[]) =>
      Object.fromEntries(rows.map((r) => [r.account_id, Number(r.requests)]));
    const sql = 'select account_id, sum(requests)::text as requests from tally.usage_hourly_live group by 1';
    const mine = await as(db.pool, user(alice), async (c) => sum((await c.query(sql)).rows));
    expect(mine).toEqual({ [a]: 5 });
    const all = await as(db.pool, service, async (c) => sum((await c.query(sql)).rows));
    expect(all).toEqual({ [a]: 5, [b]: 9 });
    for (const view of ['usage_daily_live', 'usage_monthly_live']) {
      const rows = await as(db.pool, user(alice), async (c) => (await c.query(`select account_id, sum(requests)::int as n from tally.${view} group by 1`)).rows);
      expect(rows, view).toEqual([{ account_id: a, n: 5 }]);
    }
  });

  it('events_tail returns a member only their accounts\' unfolded events, a service all of them', async () => {
    const count = (persona: Parameters<typeof as>[1]) =>
      as(db.pool, persona, async (c) => (await c.query('select account_id, count(*)::int as n from tally.events_tail() group by 1 order by n')).rows);
    expect(await count(user(alice))).toEqual([{ account_id: a, n: 2 }]);
    expect(await count(service)).toEqual([{ account_id: a, n: 2 }, { account_id: b, n: 4 }]);
    const stranger = await createUser(db.pool);
    expect(await count(user(stranger))).toEqual([]);
    await expect(as(db.pool, anon, (c) => c.query('select * from tally.events_tail()'))).rejects.toMatchObject({ code: '42501' });
  });

  it('a role that row-level security does not filter (BYPASSRLS) gets the whole tail, as a direct read would', async () => {
    const role = `tally_bypass_${Math.random().toString(36).slice(2, 10)}`;
    await db.pool.query(`create role ${role} nologin bypassrls`);
    try {
      await db.pool.query(`grant usage on schema tally to ${role}; grant execute on function tally.events_tail() to ${role}`);
      const client = await db.pool.connect();
      try {
        await client.query(`begin; set local role ${role}`);
        const { rows } = await client.query('select account_id, count(*)::int as n from tally.events_tail() group by 1 order by n');
        expect(rows).toEqual([{ account_id: a, n: 2 }, { account_id: b, n: 4 }]);
        await client.query('rollback');
      } finally {
        client.release();
      }
    } finally {
      await db.pool.query(`revoke all on schema tally from ${role}; revoke all on function tally.events_tail() from ${role}; drop role ${role}`);
    }
  });
});
