/**
 * Incremental rollups: tally.run_rollups folds events into hourly (UTC), daily and monthly
 * (account time zone) aggregates exactly once, whatever the chunking, an open inserting
 * transaction, a second concurrent run or a run killed before it commits.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';
import { createAccount, recordEvents, recordEventsOn, setSetting } from './helpers/ledger.ts';
import { as, createUser, service, user } from './helpers/personas.ts';
import { eventually } from './helpers/wait.ts';

let db: TestDatabase;
beforeAll(async () => {
  db = await migratedDatabase();
  // these tests use dates from long ago; events older than retention.events are refused at ingest
  await setSetting(db.pool, 'retention.events', '100 years');
});
afterAll(async () => {
  await db?.drop();
});

const METRICS = `count(*)::bigint as requests, count(*) filter (where success)::bigint as successful,
  count(*) filter (where not success)::bigint as failed, count(*) filter (where cached)::bigint as cached,
  coalesce(sum(files), 0)::numeric as files, coalesce(sum(bytes), 0)::numeric as bytes,
  coalesce(sum(tokens_in), 0)::numeric as tokens_in, coalesce(sum(tokens_out), 0)::numeric as tokens_out,
  coalesce(sum(cost_usd), 0)::numeric as cost_usd, coalesce(sum(potential_cost_usd), 0)::numeric as potential_cost_usd,
  sum(quantity)::numeric as quantity, count(latency_ms)::bigint as latency_count,
  coalesce(sum(latency_ms), 0)::numeric as latency_sum, max(latency_ms) as latency_max`;
const DIMS = 'account_id, api_key_id, event_type, provider, model, endpoint, file_type';
const AGG_COLUMNS = `${DIMS}, requests, successful, failed, cached, files, bytes, tokens_in, tokens_out, cost_usd,
  potential_cost_usd, quantity, latency_count, latency_sum, latency_max`;

const NOT_VOID = 'not exists (select 1 from tally.event_voids v where v.account_id = e.account_id and v.event_id = e.id)';
/** Each grain computed straight from the events (voided ones left out), to compare with the rollup tables. */
const DIRECT = {
  usage_hourly: `select date_trunc('hour', e.occurred_at, 'UTC')::text as bucket, ${DIMS.replace(/(\w+)/g, 'e.$1')}, ${METRICS}
    from tally.events e where e.account_id = any($1::uuid[]) and ${NOT_VOID} group by 1, ${DIMS.replace(/(\w+)/g, 'e.$1')}`,
  usage_daily: `select (e.occurred_at at time zone a.timezone)::date::text as bucket, ${DIMS.replace(/(\w+)/g, 'e.$1')}, ${METRICS}
    from tally.events e join tally.accounts a on a.id = e.account_id where e.account_id = any($1::uuid[]) and ${NOT_VOID} group by 1, ${DIMS.replace(/(\w+)/g, 'e.$1')}`,
  usage_monthly: `select date_trunc('month', (e.occurred_at at time zone a.timezone))::date::text as bucket, ${DIMS.replace(/(\w+)/g, 'e.$1')}, ${METRICS}
    from tally.events e join tally.accounts a on a.id = e.account_id where e.account_id = any($1::uuid[]) and ${NOT_VOID} group by 1, ${DIMS.replace(/(\w+)/g, 'e.$1')}`,
} as const;

async function expectRollupsMatchEvents(accounts: string[]): Promise<void> {
  for (const [table, direct] of Object.entries(DIRECT)) {
    const order = `order by bucket, ${DIMS}`;
    const expected = (await db.pool.query(`select * from (${direct}) d ${order}`, [accounts])).rows;
    const actual = (
      await db.pool.query(`select bucket::text as bucket, ${AGG_COLUMNS} from tally.${table} where account_id = any($1::uuid[]) ${order}`, [accounts])
    ).rows;
    expect(actual, table).toEqual(expected);
    // every histogram counts exactly the events with a latency
    const bad = await db.pool.query(
      `select count(*)::int as n from tally.${table} where account_id = any($1::uuid[])
        and (select sum(x) from unnest(latency_hist) x) <> latency_count`,
      [accounts],
    );
    expect(bad.rows[0].n, `${table} histograms`).toBe(0);
  }
}

async function runRollups(maxEvents: number | null = null, client: pg.Pool | pg.PoolClient = db.pool) {
  const { rows } = await client.query('select tally.run_rollups(p_max_events => $1::bigint) as r', [maxEvents]);
  return rows[0].r as { events: number; watermark: number; more: boolean; skipped?: boolean; waiting_for_pids?: number[] };
}

async function drain(maxEvents: number | null = null): Promise<number> {
  let calls = 0;
  for (;;) {
    calls++;
    const r = await runRollups(maxEvents);
    if (!r.more) return calls;
  }
}

/** n events for the account spread over the last days, with every kind of metric. */
function events(account: string, n: number, seed = 0) {
  return Array.from({ length: n }, (_, i) => {
    const k = i + seed;
    return {
      account_id: account,
      event_type: ['api_request', 'llm_call', 'file_upload'][k % 3],
      occurred_at: new Date(Date.now() - (k % 97) * 3_541_000).toISOString(),
      provider: k % 3 === 1 ? ['openai', 'anthropic'][k % 2] : undefined,
      model: k % 3 === 1 ? 'm-' + (k % 4) : undefined,
      endpoint: k % 3 === 0 ? `/v1/items/${k % 5}` : undefined,
      file_type: k % 3 === 2 ? ['image/png', 'text/csv'][k % 2] : undefined,
      status_code: [200, 201, 404, 503][k % 4],
      bytes: k % 3 === 2 ? 1000 + k : undefined,
      files: k % 3 === 2 ? 1 : undefined,
      tokens_in: k % 3 === 1 ? 100 + k : undefined,
      tokens_out: k % 3 === 1 ? 10 + (k % 50) : undefined,
      cost_usd: k % 3 === 1 ? `0.000${k % 1000}` : undefined,
      cached: k % 7 === 0,
      latency_ms: k % 11 === 0 ? undefined : (k * 37) % 5000,
      quantity: k % 5 === 0 ? '2.5' : undefined,
    };
  });
}

describe('run_rollups', () => {
  it('folds events into hourly, daily and monthly buckets equal to a direct GROUP BY, once', async () => {
    const kolkata = await createAccount(db.pool, 'Kolkata', null, 'Asia/Kolkata');
    const newYork = await createAccount(db.pool, 'New York', null, 'America/New_York');
    expect(await recordEvents(db.pool, [...events(kolkata, 400), ...events(newYork, 400, 7)])).toMatchObject({ accepted: 800 });
    await drain();
    await expectRollupsMatchEvents([kolkata, newYork]);

    // nothing new: a run changes nothing
    const again = await runRollups();
    expect(again).toMatchObject({ events: 0, more: false });
    await expectRollupsMatchEvents([kolkata, newYork]);

    // late events (days in the past) land in their own buckets on the next run
    const late = events(kolkata, 30, 1000).map((e, i) => ({ ...e, occurred_at: new Date(Date.now() - (40 + i) * 86_400_000).toISOString() }));
    expect(await recordEvents(db.pool, late)).toMatchObject({ accepted: 30 });
    expect(await runRollups()).toMatchObject({ events: 30 });
    await expectRollupsMatchEvents([kolkata, newYork]);
  });

  it('days and months follow the account time zone across a DST change', async () => {
    const kolkata = await createAccount(db.pool, 'IST', null, 'Asia/Kolkata');
    const newYork = await createAccount(db.pool, 'NYC', null, 'America/New_York');
    await recordEvents(db.pool, [
      // 23:59 and 00:01 in Kolkata (UTC+5:30), on both sides of local midnight
      { account_id: kolkata, event_type: 'x', occurred_at: '2025-03-31T18:29:00Z' },
      { account_id: kolkata, event_type: 'x', occurred_at: '2025-03-31T18:31:00Z' },
      // 01:30 EDT and 01:30 EST on 2025-11-02, the day New York falls back; then 23:30 EST
      { account_id: newYork, event_type: 'x', occurred_at: '2025-11-02T05:30:00Z' },
      { account_id: newYork, event_type: 'x', occurred_at: '2025-11-02T06:30:00Z' },
      { account_id: newYork, event_type: 'x', occurred_at: '2025-11-03T04:30:00Z' },
      // March 1st in UTC, still February 28th (23:59 EST) in New York
      { account_id: newYork, event_type: 'x', occurred_at: '2025-03-01T04:59:00Z' },
    ]);
    await drain();
    const daily = await db.pool.query(
      'select account_id, bucket::text, requests::int from tally.usage_daily where account_id = any($1::uuid[]) order by account_id = $2 desc, bucket',
      [[kolkata, newYork], kolkata],
    );
    expect(daily.rows.map((r) => [r.account_id === kolkata ? 'IST' : 'NYC', r.bucket, r.requests])).toEqual([
      ['IST', '2025-03-31', 1],
      ['IST', '2025-04-01', 1],
      ['NYC', '2025-02-28', 1],
      ['NYC', '2025-11-02', 3],
    ]);
    const monthly = await db.pool.query(
      'select account_id, bucket::text, requests::int from tally.usage_monthly where account_id = any($1::uuid[]) order by account_id = $2 desc, bucket',
      [[kolkata, newYork], kolkata],
    );
    expect(monthly.rows.map((r) => [r.account_id === kolkata ? 'IST' : 'NYC', r.bucket, r.requests])).toEqual([
      ['IST', '2025-03-01', 1],
      ['IST', '2025-04-01', 1],
      ['NYC', '2025-02-01', 1],
      ['NYC', '2025-11-01', 3],
    ]);
  });

  it('a backlog folded in small chunks gives the same aggregates as one run', async () => {
    const account = await createAccount(db.pool, 'Chunks');
    await drain();
    await recordEvents(db.pool, events(account, 500, 3));
    const first = await runRollups(50);
    expect(first).toMatchObject({ more: true });
    expect(first.events).toBeLessThanOrEqual(50);
    const calls = await drain(50);
    expect(calls).toBeGreaterThanOrEqual(9);
    await expectRollupsMatchEvents([account]);
  });

  it('a run killed before it commits leaves nothing; the next run folds everything once', async () => {
    const account = await createAccount(db.pool, 'Killed');
    await drain();
    await recordEvents(db.pool, events(account, 120, 5));
    const victim = await db.pool.connect();
    victim.on('error', () => undefined);
    const { rows } = await victim.query('select pg_backend_pid() as pid');
    await victim.query('begin');
    expect(await runRollups(null, victim)).toMatchObject({ events: 120 });
    await db.pool.query('select pg_terminate_backend($1)', [rows[0].pid]);
    victim.release(true);
    expect((await db.pool.query('select count(*)::int as n from tally.usage_hourly where account_id = $1', [account])).rows[0].n).toBe(0);
    // until the killed backend has exited it still holds the lock, and a run is skipped
    await eventually(async () => expect(await runRollups()).toMatchObject({ events: 120 }));
    await expectRollupsMatchEvents([account]);
  });

  it('a second run at the same time returns without work', async () => {
    const first = await db.pool.connect();
    try {
      await first.query('begin');
      await runRollups(null, first);
      expect(await runRollups()).toMatchObject({ skipped: true });
      await first.query('commit');
    } finally {
      first.release();
    }
  });

  it('waits for a transaction still inserting into its window, and counts its event once after commit', async () => {
    const account = await createAccount(db.pool, 'In flight');
    await drain();
    const holder = await db.pool.connect();
    try {
      await holder.query('begin');
      await holder.query('set local role service_role');
      expect(await recordEventsOn(holder, [{ account_id: account, event_type: 'slow', idempotency_key: 'in-flight' }])).toMatchObject({ accepted: 1 });
      // an event committed after the open one, with a higher id
      await recordEvents(db.pool, [{ account_id: account, event_type: 'fast' }]);

      // with a short wait the run gives up, says whom it waited for, and folds nothing
      await setSetting(db.pool, 'rollups.max_wait', '200 milliseconds');
      const { rows: holderPid } = await holder.query('select pg_backend_pid() as pid');
      expect(await runRollups()).toMatchObject({ events: 0, more: true, waiting_for_pids: [holderPid[0].pid] });
      await setSetting(db.pool, 'rollups.max_wait', null);

      // with the default wait, the run blocks until the holder commits, then folds both
      const runner = await db.pool.connect();
      try {
        const { rows: runnerPid } = await runner.query('select pg_backend_pid() as pid');
        const pending = runRollups(null, runner);
        // the run is waiting for the holder (a wait, not a clock)
        await eventually(async () => {
          const { rows } = await db.pool.query("select wait_event from pg_stat_activity where pid = $1 and state = 'active'", [runnerPid[0].pid]);
          expect(rows[0]?.wait_event).toBe('PgSleep');
        });
        await holder.query('commit');
        expect(await pending).toMatchObject({ events: 2, more: false });
      } finally {
        runner.release();
      }
    } finally {
      await holder.query('rollback').catch(() => undefined);
      holder.release();
    }
    const { rows } = await db.pool.query(
      "select event_type, requests::int from tally.usage_hourly where account_id = $1 order by event_type",
      [account],
    );
    expect(rows).toEqual([
      { event_type: 'fast', requests: 1 },
      { event_type: 'slow', requests: 1 },
    ]);
    expect(await runRollups()).toMatchObject({ events: 0 });
  });

  it('rollup_status reports the watermark, the pending tail and the last run', async () => {
    const account = await createAccount(db.pool, 'Status');
    await drain();
    await recordEvents(db.pool, events(account, 25, 11));
    const before = (await db.pool.query('select tally.rollup_status() as s')).rows[0].s;
    expect(before).toMatchObject({ pending_events: 25 });
    expect(before.newest_event_id - before.watermark).toBeGreaterThanOrEqual(25);
    expect(before.oldest_pending_age_seconds).toBeGreaterThanOrEqual(0);
    await runRollups();
    const after = (await db.pool.query('select tally.rollup_status() as s')).rows[0].s;
    expect(after).toMatchObject({ pending_events: 0, oldest_pending_age_seconds: null, last_run_events: 25, watermark: after.newest_event_id });
    expect(after.runs).toBeGreaterThan(before.runs);
  });

  it('rollup_status and tally status name the hours that have events but no aggregate, and a failed run', async () => {
    const { runCli, cleanEnv } = await import('./helpers/cli.ts');
    const env = cleanEnv({ DATABASE_URL: db.url });
    const account = await createAccount(db.pool, 'Gaps');
    await drain();
    // three hours of pending events, one of them already aggregated by an earlier event
    await recordEvents(db.pool, [{ account_id: account, event_type: 'x', occurred_at: '2026-11-02T10:15:00Z' }]);
    await drain();
    await recordEvents(db.pool, ['2026-11-02T10:45:00Z', '2026-11-02T08:05:00Z', '2026-11-02T08:55:00Z', '2026-11-02T09:30:00Z'].map(
      (at) => ({ account_id: account, event_type: 'x', occurred_at: at })));
    const status = async () => (await db.pool.query('select tally.rollup_status() as s')).rows[0].s;
    expect(await status()).toMatchObject({ pending_events: 4, unaggregated_hours: 2 });
    expect(new Date((await status()).oldest_unaggregated_hour).toISOString()).toBe('2026-11-02T08:00:00.000Z');
    // another dimension tuple in the aggregated hour has no row yet: that hour counts too,
    // until the event is voided (a voided event never gets one)
    await recordEvents(db.pool, [{ account_id: account, event_type: 'y', occurred_at: '2026-11-02T10:20:00Z' }]);
    expect(await status()).toMatchObject({ pending_events: 5, unaggregated_hours: 3 });
    const y = (await db.pool.query("select id from tally.events where account_id = $1 and event_type = 'y'", [account])).rows[0].id;
    await as(db.pool, service, (c) => c.query('select tally.void_events($1::bigint[], $2)', [[y], 'test']));
    expect(await status()).toMatchObject({ pending_events: 5, unaggregated_hours: 2 });
    const text = await runCli(['status'], env);
    expect(text.stdout).toMatch(/2 hour\(s\) with events but no aggregate yet \(oldest 2026-11-02T08:00Z\)/);

    const record = (ok: boolean, error: string | null) =>
      db.pool.query("select tally.record_job_run('tally-rollups', now(), now(), $1, null, $2)", [ok, error]);
    try {
      await record(false, 'could not serialize access');
      expect(await status()).toMatchObject({ last_run_ok: false, last_error: 'could not serialize access', failures: 1 });
      expect((await runCli(['status'], env)).stdout).toMatch(/latest scheduled run FAILED: could not serialize access/);
      // a failure recorded without an error message still shows as failed
      await record(false, null);
      expect((await runCli(['status'], env)).stdout).toMatch(/latest scheduled run FAILED: \(no error recorded\)/);
      await record(true, null);
      expect(await status()).toMatchObject({ last_run_ok: true, last_error: null, last_error_at: null, failures: 2 });
    } finally {
      await db.pool.query("delete from tally.job_runs where job = 'tally-rollups'");
    }
    await drain();
    expect(await status()).toMatchObject({ pending_events: 0, unaggregated_hours: 0, oldest_unaggregated_hour: null });
    await expectRollupsMatchEvents([account]);
  });

  it('the worker runs the rollups on its own, every rollups.interval', async () => {
    const { startWorker } = await import('../src/worker/worker.ts');
    const account = await createAccount(db.pool, 'Worker');
    await setSetting(db.pool, 'rollups.interval', '1 second');
    const worker = await startWorker({ connectionString: db.url });
    try {
      await recordEvents(db.pool, events(account, 50, 13));
      // wait (not a timing assertion: the deadline only bounds a hang) for the worker's run
      await eventually(
        async () => {
          const { rows } = await db.pool.query('select tally.rollup_status() as s');
          if (rows[0].s.pending_events !== 0) throw new Error(`rollups never ran: ${JSON.stringify(rows[0].s)}`);
        },
        { intervalMs: 200 },
      );
    } finally {
      await worker.stop();
      await setSetting(db.pool, 'rollups.interval', null);
    }
    await expectRollupsMatchEvents([account]);
    const { rows } = await db.pool.query("select last_ok, failures from tally.job_runs where job = 'tally-rollups'");
    expect(rows[0]).toMatchObject({ last_ok: true, failures: '0' });
  });

  it('verify_rollups finds a tampered or missing bucket; tally verify exits 1 and lists it', async () => {
    const { runCli, cleanEnv } = await import('./helpers/cli.ts');
    const account = await createAccount(db.pool, 'Verify', null, 'Asia/Kolkata');
    await recordEvents(db.pool, events(account, 200, 17));
    await drain();
    const range: [Date, Date] = [new Date(Date.now() - 6 * 86_400_000), new Date(Date.now() + 3_600_000)];
    type Found = { grain: string; account_id: string; bucket: string; expected: Record<string, number>; actual: Record<string, number> | null };
    const verify = async (): Promise<Found[]> =>
      (await db.pool.query('select grain, account_id, bucket, expected, actual from tally.verify_rollups($1, $2)', range)).rows;
    expect(await verify()).toEqual([]);
    const env = cleanEnv({ DATABASE_URL: db.url });
    const clean = await runCli(['verify', '--from', range[0].toISOString(), '--to', range[1].toISOString()], env);
    expect(clean.code, clean.stderr).toBe(0);
    expect(clean.stdout).toMatch(/^rollups consistent/);

    // an event counted twice in one day, and an hour lost
    await db.pool.query(
      "update tally.usage_daily set requests = requests + 1 where ctid = (select ctid from tally.usage_daily where account_id = $1 limit 1)",
      [account],
    );
    const { rows: lost } = await db.pool.query(
      'delete from tally.usage_hourly where ctid = (select ctid from tally.usage_hourly where account_id = $1 limit 1) returning *',
      [account],
    );
    const found = await verify();
    expect(found.map((m) => [m.grain, m.account_id, m.actual === null])).toEqual([
      ['daily', account, false],
      ['hourly', account, true],
    ]);
    expect(found[0]!.actual!.requests! - found[0]!.expected.requests!).toBe(1);
    expect(new Date(found[1]!.bucket).getTime()).toBe(lost[0].bucket.getTime());

    const dirty = await runCli(['verify', '--from', range[0].toISOString(), '--to', range[1].toISOString()], env);
    expect(dirty.code).toBe(1);
    expect(dirty.stdout).toMatch(/2 bucket\(s\) differ/);
    expect(dirty.stdout).toMatch(/daily .* requests expected \d+ stored \d+/);
    expect(dirty.stderr).toMatch(/rollups_mismatch/);
    const json = await runCli(['verify', '--json', '--from', range[0].toISOString(), '--to', range[1].toISOString()], env);
    expect(JSON.parse(json.stdout).mismatches).toHaveLength(2);
    const bad = await runCli(['verify', '--from', 'yesterday'], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--from/);

    // undo the damage, so later checks of this database see consistent rollups again
    await db.pool.query(
      'update tally.usage_daily set requests = requests - 1 where account_id = $1 and bucket = $2::date and dim_key = $3::uuid',
      [account, found[0]!.bucket, (await db.pool.query('select dim_key from tally.verify_rollups($1, $2) where grain = $3', [...range, 'daily'])).rows[0].dim_key],
    );
    await db.pool.query('insert into tally.usage_hourly select (r).* from jsonb_populate_record(null::tally.usage_hourly, $1::jsonb) r', [JSON.stringify(lost[0])]);
    expect(await verify()).toEqual([]);
  });

  it('the daily verification passes on yesterday, and fails naming the bucket once one is wrong', async () => {
    const account = await createAccount(db.pool, 'Yesterday');
    const midnight = new Date(new Date().toISOString().slice(0, 10) + 'T00:00:00Z').getTime();
    await recordEvents(db.pool, events(account, 40, 19).map((e, i) => ({ ...e, occurred_at: new Date(midnight - (i + 1) * 1_800_000).toISOString() })));
    await drain();
    const ok = await as(db.pool, service, (c) => c.query('select tally.verify_previous_day() as r'));
    expect(ok.rows[0].r).toMatchObject({ mismatches: 0 });
    await db.pool.query(
      "update tally.usage_hourly set bytes = bytes + 7 where ctid = (select ctid from tally.usage_hourly where account_id = $1 and bucket = $2::timestamptz - interval '1 hour' limit 1)",
      [account, new Date(midnight)],
    );
    await expect(as(db.pool, service, (c) => c.query('select tally.verify_previous_day()'))).rejects.toMatchObject({
      code: 'P0001',
      hint: 'rollups_mismatch',
      message: expect.stringMatching(/1 rollup bucket\(s\) differ/),
    });
  });

  it('void_events takes events out of exactly the buckets they were counted in, and keeps them for audit', async () => {
    const account = await createAccount(db.pool, 'Void', null, 'America/New_York');
    await recordEvents(db.pool, events(account, 300, 23));
    await drain();
    // the hourly rows, keyed by hour and dimensions
    const snapshot = async () =>
      new Map(
        (await db.pool.query('select bucket, dim_key, to_jsonb(u)::text as r from tally.usage_hourly u where account_id = $1', [account])).rows.map(
          (r) => [`${(r.bucket as Date).getTime()} ${r.dim_key}`, r.r as string],
        ),
      );
    const before = await snapshot();
    const { rows: victims } = await db.pool.query(
      "select id::text, date_trunc('hour', occurred_at, 'UTC') as hour from tally.events where account_id = $1 order by id limit 3",
      [account],
    );
    // and one recorded after the last run: the next run must skip it
    await recordEvents(db.pool, [{ account_id: account, event_type: 'late-mistake', idempotency_key: 'void-me' }]);
    const { rows: lateRow } = await db.pool.query("select id::text from tally.events where account_id = $1 and idempotency_key = 'void-me'", [account]);
    const ids = [...victims.map((v) => v.id), lateRow[0].id];
    const result = await as(db.pool, service, (c) => c.query('select tally.void_events($1::bigint[], $2) as r', [ids, 'test traffic']));
    expect(result.rows[0].r).toMatchObject({ voided: 4, already_void: 0 });
    await drain();
    await expectRollupsMatchEvents([account]);
    // rows of hours that held none of the voided events are untouched
    const after = await snapshot();
    const touchedHours = new Set(victims.map((v) => String((v.hour as Date).getTime())));
    let unchanged = 0;
    for (const [k, v] of before) {
      if (touchedHours.has(k.split(' ')[0]!)) continue;
      expect(after.get(k), k).toBe(v);
      unchanged++;
    }
    expect(unchanged).toBeGreaterThan(10);
    // the events stay, with who, when and why
    expect((await db.pool.query('select count(*)::int as n from tally.events where id = any($1::bigint[])', [ids])).rows[0].n).toBe(4);
    const audit = await db.pool.query('select reason, voided_by from tally.event_voids where event_id = any($1::bigint[])', [ids]);
    expect(audit.rows).toHaveLength(4);
    expect(audit.rows[0]).toMatchObject({ reason: 'test traffic', voided_by: expect.stringMatching(/service_role/) });
    // voiding again keeps the first record
    const again = await as(db.pool, service, (c) => c.query('select tally.void_events($1::bigint[], $2) as r', [ids.slice(0, 1), 'other']));
    expect(again.rows[0].r).toMatchObject({ voided: 0, already_void: 1 });
  });

  it('void_events refuses unknown ids, an empty reason and non-service callers', async () => {
    const call = (ids: unknown, reason: unknown) => as(db.pool, service, (c) => c.query('select tally.void_events($1::bigint[], $2)', [ids, reason]));
    await expect(call(['999999999'], 'x')).rejects.toMatchObject({ code: 'P0002', hint: 'event_not_found' });
    await expect(call([], 'x')).rejects.toMatchObject({ code: '22023', hint: 'invalid_parameter' });
    await expect(call(['1'], ' ')).rejects.toMatchObject({ code: '22023', hint: 'invalid_parameter' });
    const someone = await createUser(db.pool);
    await expect(as(db.pool, user(someone), (c) => c.query("select tally.void_events('{1}', 'x')"))).rejects.toMatchObject({ code: '42501' });
  });

  it('recompute_rollups rebuilds the buckets of its range from the raw events, idempotently, and nothing else', async () => {
    const account = await createAccount(db.pool, 'Recompute', null, 'Asia/Kolkata');
    await recordEvents(db.pool, events(account, 300, 29));
    await drain();
    // damage every grain
    await db.pool.query('update tally.usage_hourly set bytes = bytes + 5 where account_id = $1', [account]);
    await db.pool.query('update tally.usage_daily set requests = requests + 1 where account_id = $1', [account]);
    await db.pool.query('delete from tally.usage_monthly where account_id = $1', [account]);
    // an hourly row outside the range stays as it is (damaged), proving the range is respected
    const { rows: oldest } = await db.pool.query('select min(bucket) as b from tally.usage_hourly where account_id = $1', [account]);
    const from = new Date((oldest[0].b as Date).getTime() + 3_600_000);
    const to = new Date(Date.now() + 3_600_000);
    const recompute = () => as(db.pool, service, (c) => c.query('select tally.recompute_rollups($1, $2) as r', [from, to]));
    expect((await recompute()).rows[0].r.rebuilt_buckets.hourly).toBeGreaterThan(0);
    const mismatches = (await db.pool.query('select grain, bucket from tally.verify_rollups($1, $2) where account_id = $3', [from, to, account])).rows;
    expect(mismatches).toEqual([]);
    const outside = await db.pool.query('select sum(bytes)::text as b from tally.usage_hourly where account_id = $1 and bucket = $2', [account, oldest[0].b]);
    const direct = await db.pool.query(
      "select coalesce(sum(bytes), 0)::text as b from tally.events where account_id = $1 and date_trunc('hour', occurred_at, 'UTC') = $2",
      [account, oldest[0].b],
    );
    expect(Number(outside.rows[0].b)).toBeGreaterThan(Number(direct.rows[0].b));
    // a second recompute changes nothing
    const rowsOf = async () => (await db.pool.query('select to_jsonb(u) as r from tally.usage_hourly u where account_id = $1 order by bucket, dim_key', [account])).rows;
    const first = await rowsOf();
    await recompute();
    expect(await rowsOf()).toEqual(first);
    // and the whole history recomputed is consistent again
    await as(db.pool, service, (c) => c.query('select tally.recompute_rollups($1, $2)', [new Date(Date.now() - 30 * 86_400_000), to]));
    await expectRollupsMatchEvents([account]);
  });

  it('the live views add the tail not folded yet, so reads are exact at any moment', async () => {
    const [alice, bob] = [await createUser(db.pool), await createUser(db.pool)];
    const mine = await createAccount(db.pool, 'Live mine', alice, 'Asia/Kolkata');
    const theirs = await createAccount(db.pool, 'Live theirs', bob);
    await recordEvents(db.pool, [...events(mine, 120, 31), ...events(theirs, 50, 37)]);
    await drain();
    // a tail: new events, one of them voided before any run
    await recordEvents(db.pool, [...events(mine, 40, 41), ...events(theirs, 10, 43), { account_id: mine, event_type: 'mistake', idempotency_key: 'tail-void' }]);
    const { rows: mistake } = await db.pool.query("select id::text from tally.events where idempotency_key = 'tail-void' and account_id = $1", [mine]);
    await as(db.pool, service, (c) => c.query('select tally.void_events($1::bigint[], $2)', [[mistake[0].id], 'test']));
    const folded = await db.pool.query('select sum(requests)::int as n from tally.usage_hourly where account_id = $1', [mine]);
    expect(folded.rows[0].n).toBe(120);

    for (const [table, direct] of Object.entries(DIRECT)) {
      const order = `order by bucket, ${DIMS}`;
      const expected = (await db.pool.query(`select * from (${direct}) d ${order}`, [[mine, theirs]])).rows;
      const live = (
        await db.pool.query(`select bucket::text as bucket, ${AGG_COLUMNS} from tally.${table}_live where account_id = any($1::uuid[]) ${order}`, [[mine, theirs]])
      ).rows;
      expect(live, `${table}_live`).toEqual(expected);
      // a member sees their account only, tail included
      const seen = await as(db.pool, user(alice), (c) => c.query(`select account_id, sum(requests)::int as n from tally.${table}_live group by 1`));
      expect(seen.rows, `${table}_live as a member`).toEqual([{ account_id: mine, n: 160 }]);
    }
  });

  it('void_events is exact where local midnight happens twice, and under any session DateStyle and TimeZone', async () => {
    // Atlantic/Azores falls back from 01:00 to 00:00 on 2025-10-26: midnight happens twice
    const azores = await createAccount(db.pool, 'Azores', null, 'Atlantic/Azores');
    await recordEvents(db.pool, [
      { account_id: azores, event_type: 'x', occurred_at: '2025-10-26T00:30:00Z', idempotency_key: 'az-1' },
      { account_id: azores, event_type: 'x', occurred_at: '2025-10-25T12:00:00Z', idempotency_key: 'az-2' },
      { account_id: azores, event_type: 'x', occurred_at: '2025-10-26T12:00:00Z', idempotency_key: 'az-3' },
    ]);
    await drain();
    const { rows } = await db.pool.query("select id::text from tally.events where account_id = $1 and idempotency_key = 'az-2'", [azores]);
    const client = await db.pool.connect();
    try {
      await client.query("set datestyle = 'SQL, DMY'");
      await client.query("set timezone = 'Asia/Kolkata'");
      await client.query('select tally.void_events($1::bigint[], $2)', [[rows[0].id], 'double midnight']);
    } finally {
      await client.query('reset datestyle; reset timezone');
      client.release();
    }
    await expectRollupsMatchEvents([azores]);
  });

  it('void_events and recompute_rollups refuse REPEATABLE READ, which would read a stale watermark', async () => {
    const client = await db.pool.connect();
    try {
      await client.query('begin isolation level repeatable read');
      await expect(client.query("select tally.recompute_rollups(now() - interval '1 day', now())")).rejects.toMatchObject({ code: '22023' });
      await client.query('rollback');
    } finally {
      client.release();
    }
  });

  it("an account's time zone is fixed once it has daily rollups", async () => {
    const account = await createAccount(db.pool, 'Zoned', null, 'UTC');
    const change = (tz: string) =>
      as(db.pool, service, (c) => c.query('select tally.update_account(p_account_id => $1::uuid, p_timezone => $2::text)', [account, tz]));
    await change('Asia/Tokyo');
    await recordEvents(db.pool, events(account, 5, 47));
    await drain();
    await expect(change('Europe/Paris')).rejects.toMatchObject({ code: '22023', hint: 'timezone_locked' });
  });

  it('histogram slots stay in 0..41 whatever the latency or the input', async () => {
    const account = await createAccount(db.pool, 'Slow');
    await recordEvents(db.pool, [
      { account_id: account, event_type: 'x', latency_ms: 2_000_000_000 },
      { account_id: account, event_type: 'x', latency_ms: 1_482_910 },
      { account_id: account, event_type: 'x', latency_ms: 1_482_909 },
      { account_id: account, event_type: 'x', latency_ms: 0 },
    ]);
    await drain();
    const { rows } = await db.pool.query('select latency_hist from tally.usage_monthly where account_id = $1', [account]);
    const hist = (rows[0].latency_hist as string[]).map(Number);
    expect(hist).toHaveLength(42);
    expect([hist[0], hist[40], hist[41]]).toEqual([1, 1, 2]);
    const huge = await db.pool.query('select cardinality(tally._hist_sfunc(null, 10000000, 1)) as n');
    expect(huge.rows[0].n).toBe(42);
    expect(await runRollups(Number.MAX_SAFE_INTEGER)).toMatchObject({ more: false });
  });

  it('every histogram slot boundary lands where width_bucket puts it, when folded at once and when merged', async () => {
    const account = await createAccount(db.pool, 'Boundaries');
    const bounds = (await db.pool.query('select tally.latency_buckets() as b')).rows[0].b as number[];
    const latencies = [0, ...bounds.flatMap((b) => [b - 1, b]), 2_147_483_647];
    const expected = new Array<number>(42).fill(0);
    for (const ms of latencies) {
      const slot = bounds.filter((b) => b <= ms).length;
      expected[slot] = (expected[slot] ?? 0) + 1;
    }
    const half = Math.floor(latencies.length / 2);
    const at = '2026-03-10T12:00:00Z';
    // two folds into the same buckets: the second merges into the stored histograms
    await recordEvents(db.pool, latencies.slice(0, half).map((ms) => ({ account_id: account, event_type: 'x', occurred_at: at, latency_ms: ms })));
    await drain();
    await recordEvents(db.pool, latencies.slice(half).map((ms) => ({ account_id: account, event_type: 'x', occurred_at: at, latency_ms: ms })));
    await drain();
    for (const table of ['usage_hourly', 'usage_daily', 'usage_monthly']) {
      const { rows } = await db.pool.query(`select latency_hist from tally.${table} where account_id = $1`, [account]);
      expect(rows, table).toHaveLength(1);
      expect((rows[0].latency_hist as string[]).map(Number), table).toEqual(expected);
    }
    const direct = await db.pool.query(
      `select array_agg(n order by slot) as hist from (
         select s as slot, count(e.latency_ms)::int as n from generate_series(0, 41) s
         left join tally.events e on e.account_id = $1 and width_bucket(e.latency_ms, tally.latency_buckets()) = s group by s) x`,
      [account],
    );
    expect(direct.rows[0].hist).toEqual(expected);
  });

  it('tally rollup folds the backlog, and tally rollup --recompute rebuilds a damaged range', async () => {
    const { runCli, cleanEnv } = await import('./helpers/cli.ts');
    const env = cleanEnv({ DATABASE_URL: db.url });
    const account = await createAccount(db.pool, 'CLI rollup');
    await drain();
    await recordEvents(db.pool, events(account, 90, 53));
    const fold = await runCli(['rollup', '--json', '--chunk', '1000'], env);
    expect(fold.code, fold.stderr).toBe(0);
    expect(JSON.parse(fold.stdout)).toMatchObject({ mode: 'fold', done: 90, unit: 'events', events: 90 });
    await db.pool.query('update tally.usage_daily set requests = requests + 5 where account_id = $1', [account]);
    const from = new Date(Date.now() - 6 * 86_400_000).toISOString();
    const to = new Date(Date.now() + 3_600_000).toISOString();
    const recompute = await runCli(['rollup', '--recompute', '--from', from, '--to', to], env);
    expect(recompute.code, recompute.stderr).toBe(0);
    const inRange = await db.pool.query(
      `select count(*)::int as n from tally.events e where e.occurred_at >= $1 and e.occurred_at < $2 and ${NOT_VOID}`,
      [from, to],
    );
    expect(inRange.rows[0].n).toBeGreaterThanOrEqual(90);
    expect(recompute.stdout).toMatch(new RegExp(`^recomputed 7 days \\(${inRange.rows[0].n} events, \\d+ events/s\\) from the raw events .* \\d+ daily`));
    await expectRollupsMatchEvents([account]);
    const misuse = await runCli(['rollup', '--from', from], env);
    expect(misuse.code).toBe(2);
    expect(misuse.stderr).toMatch(/--from: only with --recompute/);
  });

  it('refuses REPEATABLE READ and a bad max_events', async () => {
    const client = await db.pool.connect();
    try {
      await client.query('begin isolation level repeatable read');
      await expect(runRollups(null, client)).rejects.toMatchObject({ code: '22023', hint: 'invalid_parameter' });
      await client.query('rollback');
    } finally {
      client.release();
    }
    await expect(runRollups(0)).rejects.toMatchObject({ code: '22023', hint: 'invalid_parameter' });
  });

  it('members read their own accounts\' aggregates only; users cannot run rollups', async () => {
    const [alice, bob] = [await createUser(db.pool), await createUser(db.pool)];
    const mine = await createAccount(db.pool, 'Mine', alice);
    const theirs = await createAccount(db.pool, 'Theirs', bob);
    await recordEvents(db.pool, [...events(mine, 10), ...events(theirs, 10)]);
    await drain();
    for (const table of ['usage_hourly', 'usage_daily', 'usage_monthly']) {
      const seen = await as(db.pool, user(alice), (c) => c.query(`select distinct account_id from tally.${table}`));
      expect(seen.rows, table).toEqual([{ account_id: mine }]);
    }
    await expect(as(db.pool, user(alice), (c) => c.query('select tally.run_rollups()'))).rejects.toMatchObject({ code: '42501' });
    await expect(as(db.pool, service, (c) => c.query('select tally.run_rollups()'))).resolves.toBeDefined();
  });
});
