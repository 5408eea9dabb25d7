/**
 * Unpriced LLM usage stays visible: an event with tokens whose cost Tally had to compute but
 * found no price for is counted as `unpriced` in every aggregate and live view (exactly
 * once, checked by verify, rebuilt by recompute and void), and `tally status` names the model.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { cleanEnv, runCli } from './helpers/cli.ts';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';
import { createAccount, recordEvents, recordEventsOn } from './helpers/ledger.ts';
import { as, createUser, service, user } from './helpers/personas.ts';

let db: TestDatabase;
beforeAll(async () => {
  db = await migratedDatabase();
  await db.pool.query(`select tally.set_model_price('openai', 'gpt-4o', 2.5, 10, '2020-01-01')`);
});
afterAll(async () => {
  await db?.drop();
});

/** The definition, straight on the events (what the migration documents). */
const UNPRICED = '(tokens_in is not null or tokens_out is not null) and (cost_usd is null or potential_cost_usd is null)';
const NOT_VOID = 'not exists (select 1 from tally.event_voids v where v.account_id = e.account_id and v.event_id = e.id)';
const GRAINS = {
  hourly: `date_trunc('hour', e.occurred_at, 'UTC')::text`,
  daily: `(e.occurred_at at time zone a.timezone)::date::text`,
  monthly: `date_trunc('month', e.occurred_at at time zone a.timezone)::date::text`,
} as const;

async function runRollups(q: pg.Pool | pg.PoolClient = db.pool) {
  const { rows } = await q.query('select tally.run_rollups() as r');
  return rows[0].r as { events: number; more: boolean; skipped?: boolean };
}
/** Folds everything pending: again while there is more, or while another run (one being killed) holds the lock. */
async function drain(): Promise<void> {
  for (;;) {
    const r = await runRollups();
    if (r.skipped) await sleep(10);
    else if (!r.more) return;
  }
}

/** Per grain: bucket, model, unpriced, from the events / the stored table / the live view. */
async function unpricedBy(account: string, source: 'events' | 'stored' | 'live'): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const [grain, bucket] of Object.entries(GRAINS)) {
    const sql =
      source === 'events'
        ? `select ${bucket} as b, e.model, count(*) filter (where ${UNPRICED})::int as n
             from tally.events e join tally.accounts a on a.id = e.account_id
            where e.account_id = $1 and ${NOT_VOID} group by 1, 2`
        : `select bucket::text as b, model, sum(unpriced)::int as n from tally.usage_${grain}${source === 'live' ? '_live' : ''}
            where account_id = $1 group by 1, 2`;
    const { rows } = await db.pool.query(`select * from (${sql}) x where n > 0 order by 1, 2`, [account]);
    out[grain] = rows.map((r) => `${r.b} ${r.model} ${r.n}`);
  }
  return out;
}

const HOUR = 3_600_000;
const at = (hoursAgo: number) => new Date(Math.floor(Date.now() / HOUR) * HOUR - hoursAgo * HOUR + 60_000).toISOString();

describe('unpriced events', () => {
  it('are exactly the events with tokens that needed a price and matched none; a given $0 is free', async () => {
    const account = await createAccount(db.pool, 'Matching');
    const llm = { account_id: account, event_type: 'llm_call', provider: 'openai', tokens_in: 1000, tokens_out: 100, occurred_at: at(1) };
    const cases = [
      { ...llm, model: 'gpt-4o', idempotency_key: 'priced' }, // priced: 0.0035
      { ...llm, model: 'gpt4o', idempotency_key: 'typo' }, // no price: cost NULL
      { ...llm, model: 'GPT-4o', idempotency_key: 'case' }, // names match exactly, case included
      { ...llm, model: 'gpt-4o-2024-08-06', idempotency_key: 'dated' }, // no prefix or date-suffix matching
      { ...llm, provider: 'azure', model: 'gpt-4o', idempotency_key: 'provider' }, // the provider is part of the key
      { ...llm, model: 'gpt4o', cached: true, idempotency_key: 'cached' }, // cost 0 (cached), potential unknown
      { ...llm, model: 'gpt4o', cost_usd: 0, idempotency_key: 'free' }, // a cost given as 0: free
      { ...llm, model: 'gpt4o', cached: true, cost_usd: 0, potential_cost_usd: '0.01', idempotency_key: 'given' },
      { ...llm, model: 'gpt4o', tokens_in: undefined, tokens_out: undefined, idempotency_key: 'no-tokens' }, // nothing to price
    ];
    expect(await recordEvents(db.pool, cases)).toMatchObject({ accepted: cases.length });
    const { rows } = await db.pool.query(
      `select idempotency_key as k, cost_usd::text as cost, potential_cost_usd::text as potential, ${UNPRICED} as unpriced
         from tally.events where account_id = $1 order by id`,
      [account],
    );
    expect(rows.map((r) => [r.k, r.cost, r.potential, r.unpriced])).toEqual([
      ['priced', '0.003500000000', '0.003500000000', false],
      ['typo', null, null, true],
      ['case', null, null, true],
      ['dated', null, null, true],
      ['provider', null, null, true],
      ['cached', '0.000000000000', null, true],
      ['free', '0.000000000000', '0.000000000000', false],
      ['given', '0.000000000000', '0.010000000000', false],
      ['no-tokens', null, null, false],
    ]);

    // in the live views before any run (the tail), in the tables after, the same in all three grains
    const expected = await unpricedBy(account, 'events');
    expect(expected.daily!.join('\n')).toMatch(/GPT-4o 1\n.*gpt-4o 1\n.*gpt-4o-2024-08-06 1\n.*gpt4o 2/);
    expect(await unpricedBy(account, 'live')).toEqual(expected);
    await drain();
    expect(await unpricedBy(account, 'stored')).toEqual(expected);
    expect(await unpricedBy(account, 'live')).toEqual(expected);
    // the free ones cost 0 and are not unpriced: the row of gpt4o says 2 of its 5 events are unknown
    const gpt4o = await db.pool.query(
      `select requests::int, unpriced::int, cost_usd::text from tally.usage_daily where account_id = $1 and model = 'gpt4o'`,
      [account],
    );
    expect(gpt4o.rows).toEqual([{ requests: 5, unpriced: 2, cost_usd: '0.000000000000' }]);
  });

  it('are folded exactly once with concurrent writers, overlapping runs and a run killed before it commits', async () => {
    const account = await createAccount(db.pool, 'Stress', null, 'Asia/Kolkata');
    await drain();
    const batch = (w: number, i: number) =>
      Array.from({ length: 40 }, (_, k) => ({
        account_id: account,
        event_type: 'llm_call',
        provider: 'openai',
        model: ['gpt-4o', 'gpt4o', 'claude-x'][(w + i + k) % 3],
        tokens_in: 10 + k,
        cached: k % 5 === 0,
        occurred_at: at((w * 7 + i * 3 + k) % 60),
      }));
    let writing = true;
    const writers = Array.from({ length: 3 }, async (_, w) => {
      for (let i = 0; i < 8; i++) await recordEvents(db.pool, batch(w, i));
    });
    const runner = (async () => {
      while (writing) {
        await runRollups();
        // a run that folds its window and is killed before it commits leaves nothing behind
        const victim = await db.pool.connect();
        victim.on('error', () => undefined);
        const { rows } = await victim.query('select pg_backend_pid() as pid');
        await victim.query('begin');
        await runRollups(victim);
        await db.pool.query('select pg_terminate_backend($1)', [rows[0].pid]);
        victim.release(true);
        // gone, with its transaction rolled back, before the next round
        await vi.waitFor(async () => {
          const alive = await db.pool.query('select count(*)::int as n from pg_stat_activity where pid = $1', [rows[0].pid]);
          expect(alive.rows[0].n).toBe(0);
        });
      }
    })();
    await Promise.all(writers);
    writing = false;
    await runner;
    await drain();
    const expected = await unpricedBy(account, 'events');
    const total = (x: Record<string, string[]>) => x.daily!.reduce((n, line) => n + Number(line.split(' ').at(-1)), 0);
    expect(total(expected)).toBeGreaterThan(100);
    expect(await unpricedBy(account, 'stored')).toEqual(expected);
    expect(await unpricedBy(account, 'live')).toEqual(expected);
    const verify = await db.pool.query(`select * from tally.verify_rollups(now() - interval '4 days', now() + interval '1 hour')`);
    expect(verify.rows).toEqual([]);
  });

  it('verify_rollups catches a wrong unpriced count; recompute repairs it; a void takes the event out', async () => {
    const account = await createAccount(db.pool, 'Verify');
    await recordEvents(db.pool, [
      { account_id: account, event_type: 'llm_call', provider: 'openai', model: 'gpt4o', tokens_in: 5, occurred_at: at(2) },
      { account_id: account, event_type: 'llm_call', provider: 'openai', model: 'gpt4o', tokens_in: 6, occurred_at: at(2) },
    ]);
    await drain();
    const range = [new Date(Date.now() - 2 * 86_400_000), new Date(Date.now() + HOUR)];
    const verify = async () =>
      (await db.pool.query('select grain, expected, actual from tally.verify_rollups($1, $2) where account_id = $3', [...range, account])).rows;
    expect(await verify()).toEqual([]);

    await db.pool.query(`update tally.usage_daily set unpriced = unpriced - 1 where account_id = $1 and model = 'gpt4o'`, [account]);
    const found = await verify();
    expect(found.map((r) => [r.grain, r.expected.unpriced, r.actual.unpriced])).toEqual([['daily', 2, 1]]);
    // every other metric agrees: only the unpriced count is wrong
    expect({ ...found[0].expected, unpriced: 0 }).toEqual({ ...found[0].actual, unpriced: 0 });

    await db.pool.query('select tally.recompute_rollups($1, $2)', range);
    expect(await verify()).toEqual([]);

    const { rows } = await db.pool.query(`select id from tally.events where account_id = $1 order by id limit 1`, [account]);
    await db.pool.query(`select tally.void_events(array[$1::bigint], 'test event')`, [rows[0].id]);
    for (const grain of Object.keys(GRAINS)) {
      const r = await db.pool.query(`select sum(unpriced)::int as n from tally.usage_${grain} where account_id = $1`, [account]);
      expect(r.rows[0].n, grain).toBe(1);
    }
    expect(await verify()).toEqual([]);
  });

  it('tally.unpriced_models lists a recent window for service callers; tally status shows the model', async () => {
    const account = await createAccount(db.pool, 'Status');
    await recordEvents(db.pool, [
      { account_id: account, event_type: 'llm_call', provider: 'acme', model: 'typo-model-1', tokens_in: 1, occurred_at: at(3) },
      { account_id: account, event_type: 'llm_call', provider: 'acme', model: 'typo-model-1', tokens_in: 1, occurred_at: at(1) },
      // older than the window: not listed
      { account_id: account, event_type: 'llm_call', provider: 'acme', model: 'old-typo', tokens_in: 1, occurred_at: at(24 * 9) },
    ]);
    await runRollups();
    // one more in the tail, past the watermark
    await recordEvents(db.pool, [
      { account_id: account, event_type: 'llm_call', provider: 'acme', model: 'typo-model-1', tokens_in: 1, occurred_at: at(0) },
    ]);
    const list = async (window = '7 days') =>
      (
        await as(db.pool, service, (c) =>
          c.query('select provider, model, events::int, accounts::int, last_seen_hour from tally.unpriced_models(p_window => $1::interval)', [window]),
        )
      ).rows;
    const mine = (await list()).filter((r) => r.provider === 'acme');
    expect(mine.map((r) => [r.model, r.events, r.accounts])).toEqual([['typo-model-1', 3, 1]]);
    expect(mine[0].last_seen_hour.getTime()).toBe(new Date(at(0)).getTime() - 60_000);
    expect((await list('10 days')).filter((r) => r.provider === 'acme').map((r) => r.model)).toEqual(['typo-model-1', 'old-typo']);

    await expect(list('1 year')).rejects.toMatchObject({ code: '22023', hint: 'invalid_parameter' });
    const stranger = await createUser(db.pool);
    await expect(as(db.pool, user(stranger), (c) => c.query('select * from tally.unpriced_models()'))).rejects.toMatchObject({ code: '42501' });

    const status = await runCli(['status'], cleanEnv({ DATABASE_URL: db.url }));
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/unpriced: +\d+ LLM event\(s\) in the last 7 days matched no price/);
    expect(status.stdout).toMatch(/acme \/ typo-model-1: 3 event\(s\) in 1 account\(s\), last seen \d{4}-\d\d-\d\dT\d\d:00Z/);
    expect(status.stdout).not.toMatch(/old-typo/);
    const json = JSON.parse((await runCli(['status', '--json'], cleanEnv({ DATABASE_URL: db.url }))).stdout);
    expect(json.unpriced).toContainEqual(expect.objectContaining({ provider: 'acme', model: 'typo-model-1', events: 3, accounts: 1 }));
  });

  it('a model priced afterwards and repriced stops counting as unpriced once its buckets are rebuilt', async () => {
    const account = await createAccount(db.pool, 'Reprice');
    await recordEventsOn(db.pool, [
      { account_id: account, event_type: 'llm_call', provider: 'late', model: 'priced-later', tokens_in: 1_000_000, occurred_at: at(5) },
    ]);
    await drain();
    const unpriced = async () =>
      (await db.pool.query('select sum(unpriced)::int as n, sum(cost_usd)::numeric(20, 6)::text as cost from tally.usage_hourly_live where account_id = $1', [account])).rows[0];
    expect(await unpriced()).toEqual({ n: 1, cost: '0.000000' });
    await db.pool.query(`select tally.set_model_price('late', 'priced-later', 3, 0, '2020-01-01')`);
    const range = [new Date(Date.now() - 86_400_000), new Date(Date.now() + HOUR)];
    await db.pool.query('select tally.reprice($1, $2)', range);
    await db.pool.query('select tally.recompute_rollups($1, $2)', range);
    expect(await unpriced()).toEqual({ n: 0, cost: '3.000000' });
  });
});
