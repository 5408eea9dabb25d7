/**
 * Moving history out of events_default leaves no dead tuples behind: the default partition
 * is truncated in the same transaction when the move empties it, so the tail read of the
 * live views touches no page of it at once (buffer counts, not timings). And
 * ensure_partitions_for creates the partitions that given times need.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';
import { createAccount, DAY, recordEvents, setSetting } from './helpers/ledger.ts';
import { as, createUser, service, user } from './helpers/personas.ts';

let db: TestDatabase;
beforeAll(async () => {
  db = await migratedDatabase();
  // history from years ago is the point here
  await setSetting(db.pool, 'retention.events', '100 years');
});
afterAll(async () => {
  await db?.drop();
});

const asService = async (sql: string, values: unknown[] = []) => (await as(db.pool, service, (c) => c.query(sql, values))).rows;

/** Loads `n` events of one old month into events_default, in batches. */
async function loadHistory(account: string, month: string, n: number): Promise<void> {
  for (let done = 0; done < n; done += 5000) {
    const batch = Array.from({ length: Math.min(5000, n - done) }, (_, i) => ({
      account_id: account, event_type: 'history', occurred_at: `${month}-${String(1 + ((done + i) % 27)).padStart(2, '0')}T10:00:00Z`, bytes: i,
    }));
    expect((await recordEvents(db.pool, batch)).accepted).toBe(batch.length);
  }
}

/**
 * Heap pages of events_default read by the tail query of the live views (EXPLAIN ANALYZE,
 * BUFFERS). The scan is forced sequential: an index scan's node would also count the
 * metapage of the partition's (empty) index under the same relation name, and whether the
 * planner picks one depends on statistics, not on what is stored.
 */
async function defaultPagesReadByTail(): Promise<number> {
  const [{ watermark }] = await asService('select tally.rollup_watermark()::text as watermark');
  const client = await db.pool.connect();
  let rows;
  try {
    await client.query('begin');
    await client.query('set local enable_indexscan = off; set local enable_bitmapscan = off; set local enable_indexonlyscan = off');
    ({ rows } = await client.query(`explain (analyze, buffers, format json) select e.* from tally.events e where e.id > ${Number(watermark)}`));
    await client.query('commit');
  } finally {
    client.release();
  }
  let pages = 0;
  const walk = (node: Record<string, unknown>): void => {
    if (node['Relation Name'] === 'events_default') {
      pages += Number(node['Shared Hit Blocks'] ?? 0) + Number(node['Shared Read Blocks'] ?? 0);
    }
    for (const child of (node.Plans as Array<Record<string, unknown>> | undefined) ?? []) walk(child);
  };
  walk(rows[0]['QUERY PLAN'][0].Plan);
  return pages;
}

async function defaultStats() {
  const { rows } = await db.pool.query(
    `select pg_relation_size('tally.events_default')::bigint::int as bytes,
            (select count(*)::int from tally.events_default) as live`,
  );
  return rows[0] as { bytes: number; live: number };
}

describe('ensure_partitions after a move', () => {
  it('truncates the emptied default partition: no dead tuples, no page of it read by the tail', async () => {
    const account = await createAccount(db.pool, 'History');
    await loadHistory(account, '2011-03', 20_000);
    await asService('select tally.run_rollups()');
    expect((await defaultStats()).live).toBe(20_000);

    const [{ r }] = await asService('select tally.ensure_partitions() as r');
    expect(r).toMatchObject({ created: expect.arrayContaining(['events_p2011_03']), moved_rows: 20_000, default_rows: 0, default_truncated: true });
    // the file is empty: nothing for a scan or autovacuum to wade through
    expect(await defaultStats()).toEqual({ bytes: 0, live: 0 });
    const { rows: dead } = await db.pool.query(`select n_dead_tup::int as dead from pg_stat_user_tables where relid = 'tally.events_default'::regclass`);
    expect(dead[0].dead).toBe(0);
    expect(await defaultPagesReadByTail()).toBe(0);

    // the moved rows are all there, once, and the aggregates still agree with them
    const { rows: moved } = await db.pool.query(`select count(*)::int as n from tally.events_p2011_03 where account_id = $1`, [account]);
    expect(moved[0].n).toBe(20_000);
    expect(await asService(`select * from tally.verify_rollups('2011-03-01Z', '2011-04-01Z')`)).toEqual([]);
    // and the emptied default partition takes new rows as before (a month without a partition)
    expect((await recordEvents(db.pool, [{ account_id: account, event_type: 'x', occurred_at: '2010-06-01T00:00:00Z' }])).accepted).toBe(1);
    expect(await defaultStats()).toMatchObject({ live: 1 });
    expect((await asService('select tally.ensure_partitions() as r'))[0].r).toMatchObject({ moved_rows: 1, default_truncated: true });
  });

  it('not while a rollup runs (it must never read a truncated snapshot): the dead tuples stay until the next move', async () => {
    const account = await createAccount(db.pool, 'Rolling');
    await loadHistory(account, '2013-02', 10_000);
    await asService('select tally.run_rollups()');
    const rollup = await db.pool.connect();
    try {
      await rollup.query('begin');
      await rollup.query(`select pg_advisory_xact_lock(hashtext('tally.run_rollups'))`);
      const [{ r }] = await asService('select tally.ensure_partitions() as r');
      expect(r).toMatchObject({ moved_rows: 10_000, default_rows: 0, default_truncated: false });
    } finally {
      await rollup.query('rollback');
      rollup.release();
    }
    // the moved rows' pages are still there, dead, and the tail reads them: what the
    // truncation spares every live read
    expect((await defaultStats()).bytes).toBeGreaterThan(0);
    expect(await defaultPagesReadByTail()).toBeGreaterThan(0);
    // the next move that empties it truncates it
    await loadHistory(account, '2013-04', 10);
    const [{ r }] = await asService('select tally.ensure_partitions() as r');
    expect(r).toMatchObject({ moved_rows: 10, default_truncated: true });
    expect(await defaultStats()).toEqual({ bytes: 0, live: 0 });
    expect(await defaultPagesReadByTail()).toBe(0);
  });
});

describe('ensure_partitions_for', () => {
  it('creates the partitions of a range (clipped to retention and skew) and moves waiting rows', async () => {
    const account = await createAccount(db.pool, 'For');
    await loadHistory(account, '2014-08', 10);
    const call = async (from: string, to: string) =>
      (await asService('select tally.ensure_partitions_for(p_from => $1::timestamptz, p_to => $2::timestamptz) as r', [from, to]))[0].r;
    const r = await call('2014-07-31T20:00:00-05:00', '2014-10-01T00:30:00+01:00'); // 2014-08-01 01:00Z .. 2014-09-30 23:30Z
    expect(r).toEqual({ created: ['events_p2014_08', 'events_p2014_09'], moved_rows: 10, default_truncated: true });
    // already there: nothing to do, no lock taken
    expect(await call('2014-08-20T10:00:00Z', '2014-08-21T00:00:00Z')).toEqual({ created: [], moved_rows: 0, default_truncated: false });
    // beyond the allowed skew: none for the future
    const future = await call(new Date(Date.now() + 400 * DAY).toISOString(), new Date(Date.now() + 500 * DAY).toISOString());
    expect(future.created).toEqual([]);
    // past retention: none
    await setSetting(db.pool, 'retention.events', null);
    expect((await call('2001-01-01T00:00:00Z', '2001-03-01T00:00:00Z')).created).toEqual([]);
    await setSetting(db.pool, 'retention.events', '100 years');
    await expect(call('2015-02-01T00:00:00Z', '2015-01-01T00:00:00Z')).rejects.toMatchObject({ code: '22023', hint: 'invalid_parameter' });
  });

  it('is for services only', async () => {
    const alice = await createUser(db.pool);
    await expect(as(db.pool, user(alice), (c) => c.query("select tally.ensure_partitions_for('2015-01-01Z', '2015-02-01Z')"))).rejects.toMatchObject({
      code: '42501',
    });
  });
});
