/**
 * Retention: apply_retention drops whole events partitions past retention.events (never
 * unfolded ones), deletes hourly and daily rows and dead letters past theirs, keeps the
 * monthly rows; recompute and verify refuse ranges whose raw events are gone.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';
import { createAccount, recordEvents, setSetting } from './helpers/ledger.ts';
import { as, service } from './helpers/personas.ts';

let db: TestDatabase;
beforeAll(async () => {
  db = await migratedDatabase();
});
afterAll(async () => {
  await db?.drop();
});

const call = async (sql: string, params: unknown[] = []) => (await as(db.pool, service, (c) => c.query(sql, params))).rows[0];

describe('apply_retention', () => {
  it('drops old partitions once folded, trims hourly, daily and dead letters, keeps monthly rows', async () => {
    const account = await createAccount(db.pool, 'Old');
    // events past retention are refused at ingest: these arrive while retention is longer
    // (as when the setting is lowered later)
    await setSetting(db.pool, 'retention.events', '100 years');
    await recordEvents(db.pool, [
      { account_id: account, event_type: 'old', occurred_at: '2019-05-10T10:00:00Z', idempotency_key: 'old-1' },
      { account_id: account, event_type: 'old', occurred_at: '2019-06-10T10:00:00Z' },
      { account_id: account, event_type: 'new' },
      { account_id: account, event_type: 'bad', status_code: 1 },
    ]);
    await setSetting(db.pool, 'retention.events', null);
    await call('select tally.ensure_partitions()');
    const { rows: oldIds } = await db.pool.query("select id::text from tally.events where idempotency_key = 'old-1'");
    // a dead letter from long ago
    await db.pool.query("update tally.rejected_events set received_at = now() - interval '31 days' where account_id = $1", [account]);

    // not folded yet: the partitions stay
    const first = (await call('select tally.apply_retention() as r')).r;
    expect(first.dropped_partitions).toEqual([]);
    expect(first.kept_unfolded_partitions).toEqual(['events_p2019_05', 'events_p2019_06']);
    expect(first.rejected_deleted).toBe(1);

    await call('select tally.run_rollups()');
    // void_events refuses an event whose buckets start before the retention cutoff (they may
    // have lost raw events to dropped partitions), so void it while retention still covers it
    await expect(call('select tally.void_events($1::bigint[], $2)', [[oldIds[0].id], 'before retention'])).rejects.toMatchObject({ hint: 'past_retention' });
    await setSetting(db.pool, 'retention.events', '100 years');
    await call('select tally.void_events($1::bigint[], $2)', [[oldIds[0].id], 'before retention']);
    await setSetting(db.pool, 'retention.events', null);
    const second = (await call('select tally.apply_retention() as r')).r;
    expect(second).toMatchObject({ dropped_partitions: ['events_p2019_05', 'events_p2019_06'], kept_unfolded_partitions: [], voids_deleted: 1 });
    expect(second.hourly_deleted).toBeGreaterThanOrEqual(1);
    expect(second.daily_deleted).toBeGreaterThanOrEqual(1);

    const left = await db.pool.query("select event_type from tally.events where account_id = $1 order by event_type", [account]);
    expect(left.rows).toEqual([{ event_type: 'new' }]);
    const monthly = await db.pool.query('select bucket::text, requests::int from tally.usage_monthly where account_id = $1 order by bucket', [account]);
    expect(monthly.rows[0]).toEqual({ bucket: '2019-06-01', requests: 1 });
    expect(monthly.rows).toHaveLength(2);
    const hourly = await db.pool.query("select count(*)::int as n from tally.usage_hourly where account_id = $1 and bucket < now() - interval '90 days'", [account]);
    expect(hourly.rows[0].n).toBe(0);
    expect((await call('select tally.apply_retention() as r')).r.dropped_partitions).toEqual([]);
  });

  it('recompute_rollups and verify_rollups refuse ranges past the raw events retention', async () => {
    await expect(call("select tally.recompute_rollups('2019-01-01Z', '2019-02-01Z')")).rejects.toMatchObject({ code: '22023', hint: 'past_retention' });
    await expect(call("select * from tally.verify_rollups('2019-01-01Z', '2019-02-01Z')")).rejects.toMatchObject({ code: '22023', hint: 'past_retention' });
    await expect(call("select tally.recompute_rollups(now() - interval '2 days', now())")).resolves.toBeDefined();
  });

  it('retention settings are bounded', async () => {
    await expect(call("select tally.set_setting('retention.events', '1 day')")).rejects.toMatchObject({ code: '22023', hint: 'invalid_parameter' });
    expect((await call("select value from tally.set_setting('retention.hourly', '30 days')")).value).toBe('30 days');
    await call("select tally.set_setting('retention.hourly', null)");
  });
});
