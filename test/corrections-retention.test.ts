/**
 * Corrections rebuild whole buckets from raw events (tally._rebuild_rollups), so none may
 * rebuild a bucket that starts before the raw events' retention cutoff: a daily or monthly
 * bucket of an account outside UTC spans two UTC-month partitions, and rebuilt from the
 * survivors it would lose the rest for good. reprice and void_events refuse that
 * (past_retention) and change nothing, and stay usable on recent data.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';
import { DAY, createAccount, isoFromNow, recordEvents, setSetting } from './helpers/ledger.ts';

let db: TestDatabase;
let account: string;
let oldId: string;
let recentId: string;
beforeAll(async () => {
  db = await migratedDatabase();
  account = await createAccount(db.pool, 'Pacific', null, 'America/Los_Angeles');
  const llm = (key: string, ageMs: number) => ({
    account_id: account, event_type: 'llm_call', provider: 'p', model: 'unpriced-yet', tokens_in: 1000, tokens_out: 1000,
    occurred_at: isoFromNow(-ageMs), idempotency_key: key,
  });
  expect((await recordEvents(db.pool, [llm('old', 60 * DAY), llm('recent', 3 * DAY)])).accepted).toBe(2);
  await db.pool.query('select tally.run_rollups()');
  const { rows } = await db.pool.query('select id::text, idempotency_key from tally.events where account_id = $1', [account]);
  oldId = rows.find((r) => r.idempotency_key === 'old').id;
  recentId = rows.find((r) => r.idempotency_key === 'recent').id;
  // retention shrinks to 40 days: the 60-day-old event is now past the cutoff (not dropped yet)
  await setSetting(db.pool, 'retention.events', '40 days');
});
afterAll(async () => {
  await db?.drop();
});

describe('corrections near the retention cutoff', () => {
  it('reprice refuses a range whose events sit in buckets older than the cutoff, and reprices recent events', async () => {
    await db.pool.query(
      "select * from tally.set_model_price(p_provider => 'p', p_model => 'unpriced-yet', p_input_usd_per_mtok => 1, p_output_usd_per_mtok => 1, p_effective_from => now() - interval '100 days')",
    );
    await expect(db.pool.query("select tally.reprice(now() - interval '70 days', now())")).rejects.toMatchObject({ code: '22023', hint: 'past_retention' });
    // refused whole: not even the recent event was repriced
    expect((await db.pool.query('select count(*)::int as n from tally.events where account_id = $1 and cost_usd is not null', [account])).rows[0].n).toBe(0);
    const monthlyBefore = (await db.pool.query('select sum(requests)::int as n from tally.usage_monthly where account_id = $1', [account])).rows[0].n;

    const { rows } = await db.pool.query("select tally.reprice(now() - interval '5 days', now()) as r");
    expect(rows[0].r.repriced).toBe(1);
    const after = await db.pool.query('select sum(requests)::int as n, sum(cost_usd)::text as cost from tally.usage_monthly where account_id = $1', [account]);
    expect(after.rows[0].n).toBe(monthlyBefore); // nothing lost
    expect(after.rows[0].cost).toBe('0.002000000000');
    expect((await db.pool.query("select * from tally.verify_rollups(now() - interval '7 days', now() + interval '1 day')")).rows).toEqual([]);
  });

  it('void_events refuses an event counted in buckets older than the cutoff, and voids a recent one', async () => {
    await expect(db.pool.query("select tally.void_events(array[$1::bigint], 'test')", [oldId])).rejects.toMatchObject({ code: '22023', hint: 'past_retention' });
    expect((await db.pool.query('select count(*)::int as n from tally.event_voids where event_id = $1', [oldId])).rows[0].n).toBe(0);

    const { rows } = await db.pool.query("select tally.void_events(array[$1::bigint], 'test') as r", [recentId]);
    expect(rows[0].r.voided).toBe(1);
    const monthly = await db.pool.query('select sum(requests)::int as n from tally.usage_monthly where account_id = $1', [account]);
    expect(monthly.rows[0].n).toBe(1); // the old event is still counted, the recent one is out
  });
});
