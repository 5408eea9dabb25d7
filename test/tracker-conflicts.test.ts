/**
 * UsageTracker and idempotency conflicts: an app that reuses a key with another payload
 * sees each such event counted as a conflict (not as sent) and reported to onRejected
 * with code idempotency_conflict; the first event is kept.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTally, type Tally } from '../src/client/client.ts';
import { UsageTracker, type TrackerRejection } from '../src/ingest/tracker.ts';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let tally: Tally;
beforeAll(async () => {
  db = await migratedDatabase();
  tally = createTally({ pool: db.pool });
});
afterAll(async () => {
  await db?.drop();
});

describe('UsageTracker', () => {
  it('counts a key reused with another payload as a conflict and reports it', async () => {
    const accountId = (await tally.createAccount({ name: `conflicts ${randomUUID()}` })).id;
    const reported: TrackerRejection[] = [];
    const tracker = new UsageTracker(tally, { batchSize: 10, flushIntervalMs: 10, onRejected: (r) => reported.push(...r) });
    const occurredAt = new Date();
    tracker.track({ accountId, eventType: 'api_call', statusCode: 200, occurredAt, idempotencyKey: 'order-1' });
    await tracker.flush();
    tracker.track({ accountId, eventType: 'api_call', statusCode: 200, occurredAt, idempotencyKey: 'order-1' }); // the same event: a duplicate
    tracker.track({ accountId, eventType: 'api_call', statusCode: 500, occurredAt, idempotencyKey: 'order-1' }); // another payload: a conflict
    const stats = await tracker.close();
    expect(stats).toMatchObject({ tracked: 3, sent: 2, accepted: 1, duplicates: 1, conflicts: 1, rejected: 0, failed: 0, dropped: 0, queued: 0, inFlight: 0 });
    expect(stats.tracked).toBe(stats.queued + stats.inFlight + stats.sent + stats.conflicts + stats.rejected + stats.dropped + stats.failed);
    expect(reported).toEqual([
      { event: expect.objectContaining({ idempotency_key: 'order-1', status_code: 500 }), code: 'idempotency_conflict', message: expect.stringMatching(/^idempotency_key: 'order-1' was already used by event \d+/) },
    ]);
    const { rows } = await db.pool.query('select status_code from tally.events where account_id = $1', [accountId]);
    expect(rows).toEqual([{ status_code: 200 }]);
  });
});
