/**
 * The cost of pinning every function's search_path (Supabase lint
 * function_search_path_mutable), measured side by side on one server: each hot path runs
 * with the helpers as they were before the pin (no search_path, so `language sql` ones can
 * be inlined) and as migrated (pinned), alternating the two states round by round.
 *
 *   record_events         1,000-event batches through tally.record_events (events/s, median batch)
 *   run_rollups           folding those events into the three grains (events/s)
 *   <view>_service        a day of tally.usage_<grain>_live for one account, read by a service
 *                         caller, with an unfolded tail of TAIL events (ms, median)
 *   <view>_member         the same read by a signed-in member (RLS and the member filter)
 *   usage_daily_member    a RLS-filtered read of the tally.usage_daily table by a member
 *
 * Two databases on one server: "unpinned" has every migration but the pin migration
 * (*_pin-every-search-path.sql, replaced by a no-op: the helpers as they were, unpinned,
 * `language sql`), "pinned"
 * has all of them (helpers pinned, the hot ones rewritten). Rounds alternate between the two.
 * Sizes: BENCH_SEARCH_PATH_EVENTS per round (default 20,000), BENCH_SEARCH_PATH_TAIL (default
 * 5,000), BENCH_SEARCH_PATH_ROUNDS (5).
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { migrate } from 'postgres-migrations';
import { MIGRATIONS_DIR, runMigrations } from '../../src/database/migrate.ts';
import { median, type BenchResult, type BenchSuite } from '../lib.ts';

const EVENTS = Number(process.env.BENCH_SEARCH_PATH_EVENTS ?? 20_000);
const TAIL = Number(process.env.BENCH_SEARCH_PATH_TAIL ?? 5_000);
const ROUNDS = Number(process.env.BENCH_SEARCH_PATH_ROUNDS ?? 5);
const READS = 7;
const BATCH = 1_000;

const PIN_MIGRATION = /_pin-every-search-path\.sql$/;

/**
 * Installs every migration, the pin migration replaced by a no-op (postgres-migrations wants
 * consecutive ids), the way `tally migrate` does.
 */
export async function migrateUnpinned(url: string): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tally-unpinned-'));
  try {
    const files = fs.readdirSync(MIGRATIONS_DIR).filter((f) => f.endsWith('.sql'));
    if (!files.some((f) => PIN_MIGRATION.test(f))) throw new Error('no *_pin-every-search-path.sql migration');
    for (const f of files) {
      if (PIN_MIGRATION.test(f)) fs.writeFileSync(path.join(dir, f), 'SELECT 1; -- the pin migration, left out for the baseline\n');
      else fs.copyFileSync(path.join(MIGRATIONS_DIR, f), path.join(dir, f));
    }
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await client.query(`CREATE SCHEMA IF NOT EXISTS tally;
        CREATE TABLE IF NOT EXISTS tally.migrations (id integer PRIMARY KEY, name varchar(100) UNIQUE NOT NULL,
          hash varchar(40) NOT NULL, executed_at timestamp DEFAULT current_timestamp)`);
      await client.query('SET search_path TO tally');
      await migrate({ client }, dir);
    } finally {
      await client.end();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

type State = 'unpinned' | 'pinned';

function events(n: number, accounts: string[], round: string): Record<string, unknown>[] {
  const now = Date.now();
  return Array.from({ length: n }, (_, i) => {
    const base = {
      account_id: accounts[i % accounts.length],
      occurred_at: new Date(now - (i % 3_600) * 1_000).toISOString(),
      idempotency_key: `${round}-${i}`,
      latency_ms: (i * 37) % 2_000,
    };
    return i % 2 === 0
      ? { ...base, event_type: 'api_request', endpoint: `/v1/e${i % 20}`, method: 'GET', status_code: i % 17 === 0 ? 500 : 200 }
      : { ...base, event_type: 'llm_call', provider: 'openai', model: i % 3 === 0 ? 'gpt-4o' : 'gpt-4o-mini', tokens_in: 100 + (i % 900), tokens_out: 1 + (i % 300), properties: { feature: 'chat' } };
  });
}

interface Side {
  pool: pg.Pool;
  drop(): Promise<void>;
  member: string;
  accounts: string[];
}

async function prepare(ctx: Parameters<BenchSuite['run']>[0], state: State): Promise<Side> {
  const db = await ctx.createDatabase();
  if (state === 'pinned') await runMigrations(db.url);
  else await migrateUnpinned(db.url);
  const pool = new pg.Pool({ connectionString: db.url, max: 4 });
  const member = randomUUID();
  await pool.query('insert into auth.users (id) values ($1)', [member]);
  const accounts: string[] = [];
  for (let i = 0; i < 4; i++) {
    const { rows } = await pool.query('select id from tally.create_account(p_name => $1, p_owner_id => $2::uuid)', [`bench ${i}`, i === 0 ? member : null]);
    accounts.push(rows[0].id);
  }
  for (const [model, inp, out] of [['gpt-4o', '2.5', '10'], ['gpt-4o-mini', '0.15', '0.6']] as const) {
    await pool.query(
      "select tally.set_model_price(p_provider => 'openai', p_model => $1, p_input_usd_per_mtok => $2::numeric, p_output_usd_per_mtok => $3::numeric, p_effective_from => now() - interval '1 day')",
      [model, inp, out],
    );
  }
  return { pool, member, accounts, drop: async () => { await pool.end(); await db.drop(); } };
}

export const suite: BenchSuite = {
  name: 'search-path',
  description: 'hot paths before the pin migration (helpers unpinned, inlinable) vs after (pinned, hot ones rewritten), alternating rounds',
  async run(ctx) {
    const sides = { unpinned: await prepare(ctx, 'unpinned'), pinned: await prepare(ctx, 'pinned') };
    try {
      const unpinnedLeft = await sides.unpinned.pool.query<{ n: number }>(
        "select count(*)::int as n from pg_proc where pronamespace = 'tally'::regnamespace and prokind = 'f' and proconfig is null",
      );
      ctx.log(`unpinned side: ${unpinnedLeft.rows[0]?.n} tally functions without a pinned search_path`);

      const asMember = async (side: Side, sql: string, params: unknown[]) => {
        const client = await side.pool.connect();
        try {
          await client.query('begin');
          await client.query('set local role authenticated');
          await client.query("select set_config('request.jwt.claims', $1, true)", [JSON.stringify({ sub: side.member, role: 'authenticated' })]);
          const start = performance.now();
          await client.query(sql, params);
          const ms = performance.now() - start;
          await client.query('commit');
          return ms;
        } finally {
          client.release();
        }
      };
      const asService = async (side: Side, sql: string, params: unknown[]) => {
        const start = performance.now();
        await side.pool.query(sql, params);
        return performance.now() - start;
      };
      const rollAll = async (side: Side) => {
        let more = true;
        while (more) more = (await side.pool.query('select tally.run_rollups() as r')).rows[0].r.more === true;
      };

      const samples = new Map<string, number[]>();
      const add = (name: string, value: number) => samples.set(name, [...(samples.get(name) ?? []), value]);
      const reads: [string, string][] = [
        ['usage_hourly_live', "select * from tally.usage_hourly_live where account_id = $1 and bucket >= now() - interval '1 day'"],
        ['usage_daily_live', "select * from tally.usage_daily_live where account_id = $1 and bucket >= current_date - 1"],
        ['usage_monthly_live', "select * from tally.usage_monthly_live where account_id = $1 and bucket >= date_trunc('month', now())::date - 31"],
      ];

      const order = (k: number): State[] => (k % 2 === 0 ? ['unpinned', 'pinned'] : ['pinned', 'unpinned']);
      for (let round = 0; round < ROUNDS; round++) {
        // ingest: the two sides take turns batch by batch, so both see the same machine
        const tag = `${round}-${randomUUID().slice(0, 8)}`;
        const batches = { unpinned: events(EVENTS, sides.unpinned.accounts, tag), pinned: events(EVENTS, sides.pinned.accounts, tag) };
        for (let i = 0, k = 0; i < EVENTS; i += BATCH, k++) {
          for (const state of order(k)) {
            const start = performance.now();
            await sides[state].pool.query('select tally.record_events($1::jsonb)', [JSON.stringify(batches[state].slice(i, i + BATCH))]);
            add(`record_events_${state}`, Math.min(BATCH, EVENTS - i) / ((performance.now() - start) / 1000));
          }
        }
        for (const state of order(round)) {
          const side = sides[state];
          const rollStart = performance.now();
          await rollAll(side);
          add(`run_rollups_${state}`, EVENTS / ((performance.now() - rollStart) / 1000));
          const tail = events(TAIL, side.accounts, `${tag}-tail`);
          for (let i = 0; i < tail.length; i += BATCH) {
            await side.pool.query('select tally.record_events($1::jsonb)', [JSON.stringify(tail.slice(i, i + BATCH))]);
          }
        }
        // reads: the two sides take turns read by read
        for (let r = 0; r < READS; r++) {
          for (const state of order(r)) {
            const side = sides[state];
            for (const [view, sql] of reads) {
              add(`${view}_service_${state}`, await asService(side, sql, [side.accounts[0]]));
              add(`${view}_member_${state}`, await asMember(side, sql, [side.accounts[0]]));
            }
            add(`usage_daily_member_${state}`, await asMember(side, 'select * from tally.usage_daily where bucket >= current_date - 31', []));
          }
        }
        for (const state of order(round)) await rollAll(sides[state]);
        ctx.log(`round ${round + 1}/${ROUNDS} done`);
      }

      const results: BenchResult[] = [];
      const pair = (name: string, unit: string, better: 'higher' | 'lower', target: number) => {
        results.push({ name: `${name}_unpinned`, value: round(median(samples.get(`${name}_unpinned`) ?? [])), unit });
        results.push({
          name: `${name}_pinned`, value: round(median(samples.get(`${name}_pinned`) ?? [])), unit,
          baseline: `${name}_unpinned`, better, target,
        });
      };
      pair('record_events', 'events/s', 'higher', 0.95);
      pair('run_rollups', 'events/s', 'higher', 0.95);
      for (const [view] of reads) {
        pair(`${view}_service`, 'ms', 'lower', 1.1);
        pair(`${view}_member`, 'ms', 'lower', 1.1);
      }
      pair('usage_daily_member', 'ms', 'lower', 1.1);
      return results;
    } finally {
      await sides.unpinned.drop();
      await sides.pinned.drop();
    }
  },
};

function round(v: number): number {
  return v >= 100 ? Math.round(v) : Number(v.toFixed(2));
}
