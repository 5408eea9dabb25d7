/**
 * The rollup wrappers of the TypeScript client (runRollups, verifyRollups, voidEvents,
 * recomputeRollups, rollupStatus) against a real database: results in camelCase, money as
 * exact decimal strings (also inside the jsonb the functions answer with), event ids as
 * decimal strings, typed errors, and input refused before any round trip.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTally, type Tally } from '../src/client/client.ts';
import { ForbiddenError, InvalidInputError, InvalidParameterError, NotFoundError } from '../src/client/errors.ts';
import { differingMetrics } from '../src/client/rollups.ts';
import { formatVerify, verifyRollups } from '../src/cli/verify.ts';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';
import { as, createUser, user } from './helpers/personas.ts';

let db: TestDatabase;
let tally: Tally;
beforeAll(async () => {
  db = await migratedDatabase();
  tally = createTally({ pool: db.pool });
});
afterAll(async () => {
  await tally?.close();
  await db?.drop();
});

const hoursAgo = (h: number) => new Date(Date.now() - h * 3_600_000);
const range = () => ({ from: new Date(Date.now() - 3 * 86_400_000), to: new Date(Date.now() + 3_600_000) });

/** Runs the rollups until nothing is pending. */
async function drain(): Promise<void> {
  for (;;) {
    const r = await tally.runRollups();
    if (!r.skipped && !r.more) return;
  }
}

describe('rollup wrappers', () => {
  it('runRollups folds in chunks, rollupStatus tells where they stand, ids as decimal strings', async () => {
    await drain();
    const account = await tally.createAccount({ name: 'Rollups' });
    const events = Array.from({ length: 25 }, (_, i) => ({ accountId: account.id, eventType: 'api_call', occurredAt: hoursAgo(i % 5), latencyMs: 10 + i }));
    expect((await tally.recordEvents(events)).accepted).toBe(25);

    const before = await tally.rollupStatus();
    expect(before.watermark).toMatch(/^\d+$/);
    expect(before.newestEventId).toMatch(/^\d+$/);
    expect(before.pendingEvents).toBe(25);
    expect(before.unaggregatedHours).toBe(5);
    expect(typeof before.oldestPendingAgeSeconds).toBe('number');

    const first = await tally.runRollups({ maxEvents: 10 });
    expect(first).toEqual({ skipped: false, events: 10, watermark: String(BigInt(before.watermark) + 10n), more: true });
    const rest = await tally.runRollups({ maxEvents: 1000n });
    expect(rest).toMatchObject({ skipped: false, events: 15, watermark: before.newestEventId, more: false });

    const after = await tally.rollupStatus();
    expect(after).toMatchObject({ watermark: before.newestEventId, pendingEvents: 0, oldestPendingAgeSeconds: null, lastRunEvents: 15, unaggregatedHours: 0 });
    expect(after.lastRunFinishedAt).toBeInstanceOf(Date);
    expect(after.runs).toBeGreaterThanOrEqual(2);
    expect(typeof after.lastRunDurationMs).toBe('number');
  });

  it('a second concurrent run is reported as skipped', async () => {
    const holder = await db.pool.connect();
    try {
      await holder.query('begin');
      await holder.query("select pg_advisory_xact_lock(hashtext('tally.run_rollups'))");
      expect(await tally.runRollups()).toEqual({ skipped: true, reason: 'another run_rollups is in progress' });
    } finally {
      await holder.query('rollback').catch(() => undefined);
      holder.release();
    }
  });

  it('verifyRollups reports a damaged bucket with money as exact decimal strings; recomputeRollups repairs it', async () => {
    const account = await tally.createAccount({ name: 'Verify', timezone: 'Asia/Kolkata' });
    // a cost with more significant digits than a float holds
    const cost = '123456789.123456789012';
    await tally.recordEvents([{ accountId: account.id, eventType: 'llm_call', costUsd: cost, quantity: '2.5', tokensIn: 7, latencyMs: 40 }]);
    await drain();
    expect(await tally.verifyRollups(range())).toEqual([]);

    await db.pool.query(
      "update tally.usage_daily set cost_usd = cost_usd + 0.000000000001, requests = requests + 1 where account_id = $1",
      [account.id],
    );
    const found = await tally.verifyRollups(range());
    expect(found).toHaveLength(1);
    const [m] = found;
    expect(m).toMatchObject({ grain: 'daily', accountId: account.id });
    expect(m!.bucket).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(m!.dimKey).toMatch(/^[0-9a-f-]{36}$/);
    expect(m!.expected).toMatchObject({ requests: 1, tokensIn: 7, costUsd: cost, latencyCount: 1, latencySum: 40, latencyMax: 40 });
    expect(m!.expected!.quantity).toMatch(/^2\.50*$/);
    expect(m!.actual).toMatchObject({ requests: 2, costUsd: '123456789.123456789013' });
    expect(m!.expected!.latencyHist.reduce((a, b) => a + b, 0)).toBe(1);
    expect(differingMetrics(m!)).toEqual({
      requests: { expected: 1, actual: 2 },
      costUsd: { expected: cost, actual: '123456789.123456789013' },
    });

    const rebuilt = await tally.recomputeRollups(range());
    expect(rebuilt.rebuiltBuckets.daily).toBeGreaterThanOrEqual(1);
    expect(rebuilt.watermark).toMatch(/^\d+$/);
    expect(rebuilt.from).toBeInstanceOf(Date);
    expect(await tally.verifyRollups(range())).toEqual([]);
  });

  it('verifyRollups types a damaged hourly total (grain hourly_totals, no dimKey, no dimension); the CLI text names it', async () => {
    const account = await tally.createAccount({ name: 'Verify totals' });
    await tally.recordEvents([{ accountId: account.id, eventType: 'api_request', latencyMs: 12 }]);
    await drain();
    await db.pool.query('update tally.usage_hourly_totals set requests = requests + 2 where account_id = $1', [account.id]);
    const found = await tally.verifyRollups(range());
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ grain: 'hourly_totals', accountId: account.id, dimKey: null, dimension: null, value: null });
    expect(found[0]!.bucket).toMatch(/^\d{4}-\d{2}-\d{2} \d{2}:00:00\+00$/);
    expect(differingMetrics(found[0]!)).toEqual({ requests: { expected: 1, actual: 3 } });
    const { from, to } = range();
    const text = formatVerify(await verifyRollups(db.url, from, to));
    expect(text).toContain(`hourly_totals ${found[0]!.bucket} account ${account.id} all tuples: requests expected 1 stored 3`);
    await tally.recomputeRollups(range());
    expect(await tally.verifyRollups(range())).toEqual([]);
  });

  it('differingMetrics compares decimals by value, not by scale', () => {
    const base = { requests: 1, costUsd: '1.50', quantity: null, latencyHist: [1, 0] };
    expect(differingMetrics({ expected: base as never, actual: { ...base, costUsd: '1.5' } as never })).toEqual({});
    expect(differingMetrics({ expected: base as never, actual: null })).toEqual({
      requests: { expected: 1, actual: null },
      costUsd: { expected: '1.50', actual: null },
      latencyHist: { expected: [1, 0], actual: null },
    });
  });

  it('voidEvents takes events out of the aggregates; twice keeps the first; unknown ids are NotFoundError', async () => {
    const account = await tally.createAccount({ name: 'Void' });
    const { eventId } = await tally.recordEvent({ accountId: account.id, eventType: 'api_call', costUsd: '0.25' });
    await drain();
    const voided = await tally.voidEvents({ eventIds: [eventId], reason: 'test traffic' });
    expect(voided).toEqual({ voided: 1, alreadyVoid: 0, rebuiltBuckets: { hourly: 1, daily: 1, monthly: 1 } });
    const again = await tally.voidEvents({ eventIds: [BigInt(eventId)], reason: 'again' });
    expect(again).toMatchObject({ voided: 0, alreadyVoid: 1 });
    const { rows } = await db.pool.query('select count(*)::int as n from tally.usage_hourly where account_id = $1', [account.id]);
    expect(rows[0].n).toBe(0);
    expect(await tally.verifyRollups(range())).toEqual([]);

    await expect(tally.voidEvents({ eventIds: ['999999999999'], reason: 'x' })).rejects.toMatchObject({ code: 'event_not_found' });
    await expect(tally.voidEvents({ eventIds: ['999999999999'], reason: 'x' })).rejects.toBeInstanceOf(NotFoundError);
    await expect(tally.voidEvents({ eventIds: [], reason: 'x' })).rejects.toBeInstanceOf(InvalidParameterError);
  });

  it('bad input is refused before any round trip; a range too long is InvalidParameterError', async () => {
    await expect(tally.voidEvents({ eventIds: ['12a'], reason: 'x' })).rejects.toBeInstanceOf(InvalidInputError);
    await expect(tally.runRollups({ maxEvents: 1.5 })).rejects.toBeInstanceOf(InvalidInputError);
    await expect(tally.verifyRollups({ from: '2026-01-01', to: new Date() })).rejects.toBeInstanceOf(InvalidInputError);
    await expect(tally.runRollups({ maxEvents: 0 })).rejects.toMatchObject({ code: 'invalid_parameter', sqlstate: '22023' });
    const to = new Date();
    await expect(tally.recomputeRollups({ from: new Date(to.getTime() - 401 * 86_400_000), to })).rejects.toBeInstanceOf(InvalidParameterError);
  });

  it('members may not call them (42501)', async () => {
    const member = await createUser(db.pool);
    await expect(as(db.pool, user(member), (c) => tally.using(c).rollupStatus())).rejects.toMatchObject({ sqlstate: '42501' });
    await expect(as(db.pool, user(member), (c) => tally.using(c).runRollups())).rejects.toBeInstanceOf(ForbiddenError);
    await expect(as(db.pool, user(member), (c) => tally.using(c).estimatePendingEvents())).rejects.toBeInstanceOf(ForbiddenError);
  });

  it('estimatePendingEvents bounds the pending tail from above without scanning it, for the service role too', async () => {
    await drain();
    expect(await tally.estimatePendingEvents()).toBe(0);
    const account = (await tally.createAccount({ name: 'Estimate' })).id;
    await tally.recordEvents(Array.from({ length: 7 }, () => ({ accountId: account, eventType: 'api_call' })));
    const { rows } = await db.pool.query('select count(*)::int as n from tally.events where id > (select watermark from tally.rollup_state)');
    // as the service role, which may not read the id sequence itself
    const estimate = await as(db.pool, { role: 'service_role' }, (c) => tally.using(c).estimatePendingEvents());
    expect(estimate).toBeGreaterThanOrEqual(rows[0].n);
    expect(rows[0].n).toBe(7);
    await drain();
    expect(await tally.estimatePendingEvents()).toBe(0);
  });

  it('money stays exact even when the app parses numeric as float globally', async () => {
    const account = await tally.createAccount({ name: 'Global parsers' });
    await tally.recordEvents([{ accountId: account.id, eventType: 'llm_call', costUsd: '0.100000000001' }]);
    await drain();
    await db.pool.query("update tally.usage_hourly set cost_usd = 0.1 where account_id = $1", [account.id]);
    const numeric = pg.types.getTypeParser(1700);
    pg.types.setTypeParser(1700, parseFloat);
    try {
      const [m] = (await tally.verifyRollups(range())).filter((x) => x.accountId === account.id);
      expect(m!.expected!.costUsd).toBe('0.100000000001');
      expect(m!.actual!.costUsd).toMatch(/^0\.10*$/);
    } finally {
      pg.types.setTypeParser(1700, numeric);
    }
    await tally.recomputeRollups(range());
  });
});
