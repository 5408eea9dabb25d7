/**
 * Monthly partitions of tally.events: an event outside every partition waits in
 * events_default; tally.ensure_partitions() creates its month, moves it there (same id,
 * same row), keeps RLS and privileges closed on the new table, and does nothing the
 * second time. It also keeps this month and the months ahead ready.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
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

const ensureResult = z.strictObject({ created: z.array(z.string()), moved_rows: z.number().int(), default_rows: z.number().int(), default_truncated: z.boolean() });

async function ensurePartitions(monthsAhead: number | null = null) {
  const { rows } = await as(db.pool, service, (c) => c.query('select tally.ensure_partitions(p_months_ahead => $1::int) as r', [monthsAhead]));
  const result = ensureResult.parse(rows[0].r);
  return { names: result.created, movedRows: result.moved_rows, defaultRows: result.default_rows, created: result.created };
}

/** Name of the partition for the UTC month `offset` months from now. */
function monthName(offset: number): string {
  const now = new Date();
  const d = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + offset, 1));
  return `events_p${d.getUTCFullYear()}_${String(d.getUTCMonth() + 1).padStart(2, '0')}`;
}

async function partitionOf(ids: string[]) {
  const { rows } = await db.pool.query('select id::text, tableoid::regclass::text as part from tally.events where id = any($1::bigint[]) order by id', [ids]);
  return Object.fromEntries(rows.map((r) => [r.id, r.part]));
}

describe('ensure_partitions', () => {
  it('moves events waiting in events_default into their new month, same id and row', async () => {
    const owner = await createUser(db.pool);
    const account = await createAccount(db.pool, 'History', owner);
    const times = {
      mid: '2003-05-10T12:00:00Z',
      firstInstant: '2003-04-30T23:30:00-01:00', // 2003-05-01T00:30Z
      lastInstant: '2003-05-31T23:59:59.999999Z',
      nextMonth: '2003-06-01T00:00:00Z',
    };
    const result = await recordEvents(
      db.pool,
      Object.entries(times).map(([k, t]) => ({ account_id: account, event_type: k, occurred_at: t, idempotency_key: k, properties: { k } })),
    );
    expect(result.accepted).toBe(4);
    const snapshot = async () =>
      (await db.pool.query('select id::text, to_jsonb(e) as row from tally.events e where account_id = $1 order by id', [account])).rows;
    const before = await snapshot();
    const ids = before.map((r) => r.id as string);
    expect(Object.values(await partitionOf(ids))).toEqual(['tally.events_default', 'tally.events_default', 'tally.events_default', 'tally.events_default']);

    const first = await ensurePartitions();
    expect(first.names).toEqual(['events_p2003_05', 'events_p2003_06']);
    expect(first.movedRows).toBe(4);
    expect(first.defaultRows).toBe(0);

    expect(await snapshot()).toEqual(before);
    const byType = Object.fromEntries(before.map((r) => [r.row.event_type, r.id]));
    const parts = await partitionOf(ids);
    expect({
      mid: parts[byType.mid],
      firstInstant: parts[byType.firstInstant],
      lastInstant: parts[byType.lastInstant],
      nextMonth: parts[byType.nextMonth],
    }).toEqual({
      mid: 'tally.events_p2003_05',
      firstInstant: 'tally.events_p2003_05',
      lastInstant: 'tally.events_p2003_05',
      nextMonth: 'tally.events_p2003_06',
    });

    // the new tables are as closed as the rest of the ledger
    const { rows } = await db.pool.query(`
      select c.relname, c.relrowsecurity as rls, obj_description(c.oid, 'pg_class') is not null as commented,
             has_table_privilege('anon', c.oid, 'SELECT, INSERT, UPDATE, DELETE')
             or has_table_privilege('authenticated', c.oid, 'SELECT, INSERT, UPDATE, DELETE')
             or has_table_privilege('service_role', c.oid, 'SELECT, INSERT, UPDATE, DELETE') as api_access
      from pg_class c where c.relnamespace = 'tally'::regnamespace and c.relname in ('events_p2003_05', 'events_p2003_06') order by 1`);
    expect(rows).toEqual([
      { relname: 'events_p2003_05', rls: true, commented: true, api_access: false },
      { relname: 'events_p2003_06', rls: true, commented: true, api_access: false },
    ]);

    // members still read them through tally.events
    const seen = await as(db.pool, user(owner), async (c) => (await c.query('select count(*)::int as n from tally.events')).rows[0].n);
    expect(seen).toBe(4);

    // the second call finds nothing to do; later events of that month go straight to it
    expect(await ensurePartitions()).toMatchObject({ names: [], defaultRows: 0 });
    await recordEvents(db.pool, [{ account_id: account, event_type: 'late', occurred_at: '2003-05-20T00:00:00Z', idempotency_key: 'late' }]);
    const late = await db.pool.query("select tableoid::regclass::text as part from tally.events where account_id = $1 and event_type = 'late'", [account]);
    expect(late.rows).toEqual([{ part: 'tally.events_p2003_05' }]);
    // the idempotency keys of moved events still work
    expect(await recordEvents(db.pool, [{ account_id: account, event_type: 'mid', occurred_at: times.mid, idempotency_key: 'mid', properties: { k: 'mid' } }])).toMatchObject({ duplicates: 1 });
  });

  it('two concurrent calls create each partition once', async () => {
    const account = await createAccount(db.pool, 'Concurrent DDL');
    await recordEvents(db.pool, [
      { account_id: account, event_type: 'x', occurred_at: '2004-02-29T12:00:00Z' },
      { account_id: account, event_type: 'x', occurred_at: '2004-03-01T12:00:00Z' },
    ]);
    const [one, two] = await Promise.all([ensurePartitions(), ensurePartitions()]);
    expect([...one.names, ...two.names].sort()).toEqual(['events_p2004_02', 'events_p2004_03']);
    expect([one.defaultRows, two.defaultRows]).toEqual([0, 0]);
  });

  it('keeps this month and the months ahead ready, each month exactly covered', async () => {
    await setSetting(db.pool, 'partitions.months_ahead', '5');
    try {
      await ensurePartitions();
      const expectAhead5 = Array.from({ length: 6 }, (_, i) => monthName(i));
      const existing = await db.pool.query("select relname from pg_class where relnamespace = 'tally'::regnamespace and relname = any($1)", [expectAhead5]);
      expect(existing.rows.map((r) => r.relname).sort()).toEqual(expectAhead5);
      expect((await ensurePartitions(7)).names).toEqual([monthName(6), monthName(7)]);
    } finally {
      await setSetting(db.pool, 'partitions.months_ahead', null);
    }

    // the first and the last microsecond of each month land in that month's partition
    const months = Array.from({ length: 8 }, (_, i) => i);
    const client = await db.pool.connect();
    try {
      await client.query('begin');
      const { rows } = await client.query(
        `with bounds as (
           select m, (date_trunc('month', now() at time zone 'UTC') + make_interval(months => m)) at time zone 'UTC' as first_instant
           from unnest($1::int[]) m
         ), probes as (
           select m, first_instant as at from bounds
           union all
           select m, ((date_trunc('month', now() at time zone 'UTC') + make_interval(months => m + 1)) at time zone 'UTC') - interval '1 microsecond' from bounds
         ), ins as (
           insert into tally.events (account_id, occurred_at, event_type, success)
           select gen_random_uuid(), at, 'probe-' || m, true from probes
           returning event_type, tableoid::regclass::text as part
         )
         select event_type, array_agg(distinct part) as parts from ins group by 1 order by 1`,
        [months],
      );
      expect(rows).toEqual(
        months.map((m) => ({ event_type: `probe-${m}`, parts: [`tally.${monthName(m)}`] })).sort((x, y) => x.event_type.localeCompare(y.event_type)),
      );
    } finally {
      await client.query('rollback');
      client.release();
    }
  });

  it('partition bounds are UTC months whatever the session time zone (daylight saving time included)', async () => {
    const account = await createAccount(db.pool, 'Paris');
    await recordEvents(db.pool, [
      { account_id: account, event_type: 'x', occurred_at: '2005-03-31T23:30:00Z' },
      { account_id: account, event_type: 'x', occurred_at: '2005-03-15T00:00:00Z' },
      { account_id: account, event_type: 'x', occurred_at: '2005-10-31T23:30:00Z' },
      { account_id: account, event_type: 'x', occurred_at: '2005-11-15T00:00:00Z' },
    ]);
    const client = await db.pool.connect();
    try {
      await client.query("set timezone = 'Europe/Paris'");
      const { rows } = await client.query('select tally.ensure_partitions() as r');
      expect(rows[0].r).toMatchObject({ created: expect.arrayContaining(['events_p2005_03', 'events_p2005_10', 'events_p2005_11']), default_rows: 0 });
    } finally {
      await client.query('reset timezone');
      client.release();
    }
    const { rows } = await db.pool.query(
      `select c.relname, pg_get_expr(c.relpartbound, c.oid) as bound from pg_class c
        where c.relname in ('events_p2005_03', 'events_p2005_10', 'events_p2005_11') order by 1`,
    );
    expect(rows.map((r) => r.bound)).toEqual([
      "FOR VALUES FROM ('2005-03-01 00:00:00+00') TO ('2005-04-01 00:00:00+00')",
      "FOR VALUES FROM ('2005-10-01 00:00:00+00') TO ('2005-11-01 00:00:00+00')",
      "FOR VALUES FROM ('2005-11-01 00:00:00+00') TO ('2005-12-01 00:00:00+00')",
    ]);
  });

  it('an insert that waited for the partition of its month being attached is stored, not refused', async () => {
    const account = await createAccount(db.pool, 'Race');
    // a row of 2006-01 waits in the default partition, so ensure_partitions will move it
    await recordEvents(db.pool, [{ account_id: account, event_type: 'x', occurred_at: '2006-01-05T00:00:00Z' }]);
    const holder = await db.pool.connect();
    try {
      await holder.query('begin');
      await holder.query('select tally.ensure_partitions()');
      const { rows: pidRows } = await holder.query('select pg_backend_pid() as pid');
      const writer = await db.pool.connect();
      try {
        const { rows: writerPid } = await writer.query('select pg_backend_pid() as pid');
        const pending = recordEventsOn(writer, [
          { account_id: account, event_type: 'x', occurred_at: '2006-01-06T00:00:00Z' },
          { account_id: account, event_type: 'x' },
        ]);
        await eventually(async () => {
          const { rows } = await db.pool.query('select $2::int = any(pg_blocking_pids($1::int)) as blocked', [writerPid[0].pid, pidRows[0].pid]);
          if (!rows[0].blocked) throw new Error('the writer is not waiting for the holder');
        });
        await holder.query('commit');
        expect(await pending).toMatchObject({ accepted: 2, rejected: [] });
      } finally {
        writer.release();
      }
    } finally {
      await holder.query('rollback').catch(() => undefined);
      holder.release();
    }
    const { rows } = await db.pool.query(
      "select tableoid::regclass::text as part, count(*)::int as n from tally.events where account_id = $1 and occurred_at < '2007-01-01' group by 1",
      [account],
    );
    expect(rows).toEqual([{ part: 'tally.events_p2006_01', n: 2 }]);
  });

  it('refuses months_ahead outside 0..120', async () => {
    for (const n of [-1, 121]) {
      await expect(ensurePartitions(n)).rejects.toMatchObject({ code: '22023', hint: 'invalid_parameter', message: expect.stringMatching(/months_ahead/) });
    }
  });
});
