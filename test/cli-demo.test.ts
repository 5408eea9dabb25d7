/** `tally demo`: the seeded dataset, rolled up and exact, loaded once however often it runs. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_ACCOUNTS, demoEvents } from '../src/cli/demo-data.ts';
import { cleanEnv, runCli } from './helpers/cli.ts';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let env: NodeJS.ProcessEnv;
beforeAll(async () => {
  db = await migratedDatabase();
  env = cleanEnv({ DATABASE_URL: db.url });
});
afterAll(async () => {
  await db?.drop();
});

/** Everything the demo writes, counted and summed. */
async function snapshot() {
  const { rows } = await db.pool.query(`
    select (select count(*) from tally.accounts)::int as accounts,
           (select count(*) from tally.events)::int as events,
           (select count(*) from tally.rejected_events)::int as rejected,
           (select count(*) from tally.model_prices)::int as prices,
           (select coalesce(sum(requests), 0) from tally.usage_daily)::int as daily_requests,
           (select coalesce(sum(cost_usd), 0) from tally.usage_monthly)::text as monthly_cost,
           (select count(*) from tally.events_default)::int as in_default`);
  return rows[0];
}

describe('tally demo', () => {
  let first: any;

  it('loads 3 accounts in 3 time zones, 30 days of events with cached LLM calls, prices and refusals, all rolled up', async () => {
    const result = await runCli(['demo', '--json'], env);
    expect(result.code, result.stderr).toBe(0);
    first = JSON.parse(result.stdout);

    expect(first.accounts).toHaveLength(3);
    expect(new Set(first.accounts.map((a: any) => a.timezone)).size).toBe(3);
    expect(first.accounts.every((a: any) => a.created)).toBe(true);
    expect(first.events.generated).toBeGreaterThan(10_000);
    expect(first.events).toMatchObject({ accepted: first.events.generated, duplicates: 0, alreadyLoaded: false });
    expect(first.refused).toEqual({ sent: 5, codes: ['unknown_field', 'out_of_range', 'out_of_range', 'future_timestamp', 'invalid_value'], keptInRejectedEvents: 5, source: 'import:demo' });
    expect(first.rollups.folded).toBe(first.events.generated);
    expect(first.prices).toHaveLength(4);

    const { rows: accounts } = await db.pool.query('select external_id, timezone from tally.accounts order by external_id');
    expect(accounts).toEqual(DEMO_ACCOUNTS.map((a) => ({ external_id: a.externalId, timezone: a.timezone })).sort((a, b) => a.external_id.localeCompare(b.external_id)));

    // 30 UTC days, the three kinds of events, cached LLM calls priced at 0 with a potential cost
    const { rows: [shape] } = await db.pool.query(`
      select count(distinct (occurred_at at time zone 'UTC')::date)::int as days,
             array_agg(distinct event_type order by event_type) as kinds,
             count(*) filter (where event_type = 'llm_call' and cached)::int as cached,
             count(*) filter (where event_type = 'llm_call' and cached and cost_usd = 0 and potential_cost_usd > 0)::int as cached_priced,
             count(*) filter (where event_type = 'llm_call' and cost_usd is null)::int as unpriced
        from tally.events`);
    expect(shape).toMatchObject({ days: 30, kinds: ['api_call', 'file_upload', 'llm_call'], unpriced: 0 });
    expect(shape.cached).toBeGreaterThan(0);
    expect(shape.cached_priced).toBe(shape.cached);

    const { rows: rejected } = await db.pool.query("select code, account_id is not null as has_account from tally.rejected_events where source = 'import:demo' order by item_index");
    expect(rejected.map((r) => r.code)).toEqual(first.refused.codes);
    expect(rejected.every((r) => r.has_account)).toBe(true);

    // the rollups agree with the raw events, and nothing is pending
    const { rows: mismatches } = await db.pool.query(
      'select * from tally.verify_rollups(p_from => $1::timestamptz, p_to => $2::timestamptz)',
      [first.window.from, first.window.to],
    );
    expect(mismatches).toEqual([]);
    const { rows: [state] } = await db.pool.query('select watermark::int from tally.rollup_state');
    expect(state.watermark).toBe(first.rollups.watermark);
    expect((await snapshot()).in_default).toBe(0);

    // the summary's totals come from the rollups
    const total = first.totals.reduce((s: number, t: any) => s + t.apiCalls + t.uploads + t.llmCalls, 0);
    expect(total).toBe(first.events.generated);
  });

  it('running it again adds nothing', async () => {
    const before = await snapshot();
    const again = await runCli(['demo', '--json'], env);
    expect(again.code, again.stderr).toBe(0);
    const second = JSON.parse(again.stdout);
    expect(second.accounts.map((a: any) => a.id)).toEqual(first.accounts.map((a: any) => a.id));
    expect(second.accounts.every((a: any) => !a.created)).toBe(true);
    expect(second.events).toEqual({ generated: first.events.generated, accepted: 0, duplicates: first.events.generated, alreadyLoaded: true });
    expect(second.refused.keptInRejectedEvents).toBe(5);
    expect(second.rollups.folded).toBe(0);
    expect(second.totals).toEqual(first.totals);
    expect(await snapshot()).toEqual(before);
  });

  it('the text summary lists each account with its numbers', async () => {
    const result = await runCli(['demo', '--no-progress'], env);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    expect(result.stdout).toMatch(/^demo loaded in \d+\.\d s: 30 days, \d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d \(UTC\)\n/);
    expect(result.stdout).toContain(`events    ${first.events.generated.toLocaleString('en-US')}: 0 stored, ${first.events.generated.toLocaleString('en-US')} already there`);
    for (const a of first.accounts) expect(result.stdout).toMatch(new RegExp(`${a.name}\\s+${a.id}\\s+${a.timezone.replace('/', '\\/')}\\s+[\\d,]+`));
  });

  it('sent again in full (as after a partial load), every event is a duplicate by its idempotency key', async () => {
    const before = await snapshot();
    // one event fewer in the ledger than the demo generates: the demo sends everything again
    await db.pool.query("delete from tally.events where id = (select max(id) from tally.events where idempotency_key like 'demo:%')");
    const result = await runCli(['demo', '--json', '--no-progress'], env);
    expect(result.code, result.stderr).toBe(0);
    const resent = JSON.parse(result.stdout);
    expect(resent.events).toEqual({ generated: first.events.generated, accepted: 0, duplicates: first.events.generated, alreadyLoaded: false });
    expect((await snapshot()).rejected).toBe(before.rejected);
    expect((await snapshot()).events).toBe(before.events - 1);
  });

  it('the dataset is reproducible: the same anchor gives the same events, each with its own key', () => {
    const anchor = new Date('2026-12-01T00:00:00Z');
    const spec = DEMO_ACCOUNTS[0]!;
    const a = demoEvents(spec, '11111111-1111-4111-8111-111111111111', anchor);
    const b = demoEvents(spec, '11111111-1111-4111-8111-111111111111', anchor);
    expect(b).toEqual(a);
    expect(new Set(a.map((e) => e.idempotency_key)).size).toBe(a.length);
    const times = a.map((e) => Date.parse(String(e.occurred_at)));
    expect(Math.min(...times)).toBeGreaterThanOrEqual(anchor.getTime() - 30 * 86_400_000);
    expect(Math.max(...times)).toBeLessThan(anchor.getTime());
  });
});
