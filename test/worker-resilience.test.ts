/**
 * A real `tally worker` process survives its connections being cut at any moment: every
 * backend it holds (pg-boss's and the jobs') is terminated, repeatedly, while tally-rollups
 * waits on an open writer. The process stays up, the job is retried and later folds the
 * events, and the rollups agree with the raw events.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { cleanEnv, startCli } from './helpers/cli.ts';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';
import { DAY, createAccount, isoFromNow, setSetting } from './helpers/ledger.ts';
import { service } from './helpers/personas.ts';

let db: TestDatabase;
beforeAll(async () => {
  db = await migratedDatabase();
});
afterAll(async () => {
  await db?.drop();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Terminates every backend of the worker in the test's database; returns how many. */
async function killWorkerBackends(): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(
    `select count(*) filter (where pg_terminate_backend(pid))::int as n
       from pg_stat_activity where datname = current_database() and application_name = 'tally-worker'`,
  );
  return rows[0]?.n ?? 0;
}

describe('tally worker and lost connections', () => {
  it('survives every connection being terminated, repeatedly, while jobs run; the job is retried and succeeds', async () => {
    await setSetting(db.pool, 'rollups.interval', '1 second');
    const account = await createAccount(db.pool, 'Resilient');
    const worker = await startCli(['worker'], cleanEnv({ DATABASE_URL: db.url }), /tally: ready/);
    const exitedEarly = worker.exited.then((code) => `exited with ${code}`);
    try {
      // An open writer: its events sit in the rollups' window, so run_rollups waits on it.
      const writer = await db.pool.connect();
      try {
        await writer.query('begin');
        await writer.query(`set local role ${service.role}`);
        await writer.query("select set_config('request.jwt.claims', $1, true)", [JSON.stringify({ role: service.role })]);
        const events = Array.from({ length: 50 }, (_, i) => ({
          account_id: account,
          event_type: 'api_call',
          occurred_at: isoFromNow(-i * 60_000),
          cost_usd: '0.000123',
          idempotency_key: `resilience-${i}`,
        }));
        const { rows } = await writer.query('select tally.record_events(p_events => $1::jsonb) as r', [JSON.stringify(events)]);
        expect(rows[0].r).toMatchObject({ accepted: 50 });

        // the job is waiting on the writer: that is the backend to cut first
        await vi.waitFor(
          async () => {
            const { rows: waiting } = await db.pool.query(
              `select pid from pg_stat_activity where datname = current_database() and application_name = 'tally-worker'
                  and state = 'active' and query like '%run_rollups%'`,
            );
            expect(waiting.length).toBeGreaterThan(0);
          },
          { timeout: 60_000, interval: 100 },
        );

        let terminated = 0;
        for (let round = 0; round < 12; round++) {
          terminated += await killWorkerBackends();
          await sleep(400);
          expect(worker.child.exitCode, worker.output()).toBeNull();
        }
        expect(terminated).toBeGreaterThanOrEqual(12);
        await writer.query('commit');
      } finally {
        writer.release();
      }

      // after the cuts, the job runs again and folds the events
      await vi.waitFor(
        async () => {
          const { rows } = await db.pool.query('select tally.rollup_status() as s');
          expect(rows[0].s).toMatchObject({ pending_events: 0 });
          expect(Number(rows[0].s.watermark)).toBeGreaterThanOrEqual(50);
          const runs = await db.pool.query("select last_ok from tally.job_runs where job = 'tally-rollups'");
          expect(runs.rows[0]).toMatchObject({ last_ok: true });
        },
        { timeout: 90_000, interval: 500 },
      );
      const { rows: mismatches } = await db.pool.query('select * from tally.verify_rollups(p_from => $1::timestamptz, p_to => $2::timestamptz)', [
        isoFromNow(-2 * DAY),
        isoFromNow(DAY),
      ]);
      expect(mismatches).toEqual([]);
      const { rows: daily } = await db.pool.query('select sum(requests)::int as requests, sum(cost_usd)::text as cost from tally.usage_daily where account_id = $1', [account]);
      expect(daily[0]).toEqual({ requests: 50, cost: '0.006150000000' });

      expect(worker.child.exitCode, worker.output()).toBeNull();
      // the run cut while it waited was tried again on a new connection
      expect(worker.output()).toMatch(/job tally-rollups: connection lost \(.+\); trying again \(2 of 5\)/);
      expect(worker.output()).not.toMatch(/Unhandled|uncaught|Connection terminated unexpectedly\n\s+at /i);
    } finally {
      worker.child.kill('SIGTERM');
    }
    expect(await Promise.race([worker.exited, exitedEarly])).toBe(0);
  }, 240_000);
});
