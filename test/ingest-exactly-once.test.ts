/**
 * Exactly-once ingestion: an idempotency key is stored once per account however often,
 * however concurrently and from however many writers it is sent; items without a key are
 * always stored. Also the retention of keys.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';
import { createAccount, DAY, recordEvent, recordEvents, recordEventsOn, recordEventRow, setSetting } from './helpers/ledger.ts';
import { as, createUser, service, user } from './helpers/personas.ts';
import { eventually } from './helpers/wait.ts';

let db: TestDatabase;
beforeAll(async () => {
  db = await migratedDatabase();
});
afterAll(async () => {
  await db?.drop();
});

async function eventsOf(account: string) {
  const { rows } = await db.pool.query(
    'select idempotency_key as key, quantity, event_type from tally.events where account_id = $1 order by id',
    [account],
  );
  return rows as Array<{ key: string | null; quantity: string; event_type: string }>;
}

describe('idempotency keys', () => {
  it('the same batch sent twice is stored once', async () => {
    const account = await createAccount(db.pool, 'Twice');
    const batch = Array.from({ length: 20 }, (_, i) => ({ account_id: account, event_type: 'x', idempotency_key: `twice-${i}`, quantity: i }));
    expect(await recordEvents(db.pool, batch)).toEqual({ accepted: 20, duplicates: 0, rejected: [] });
    expect(await recordEvents(db.pool, batch)).toEqual({ accepted: 0, duplicates: 20, rejected: [] });
    expect(await recordEvents(db.pool, [...batch].reverse())).toEqual({ accepted: 0, duplicates: 20, rejected: [] });
    const stored = await eventsOf(account);
    expect(stored).toHaveLength(20);
    expect(new Set(stored.map((e) => e.key)).size).toBe(20);
  });

  it('a retried batch reports its refused items again but keeps each keyed one once in rejected_events', async () => {
    const account = await createAccount(db.pool, 'Retry dead letters');
    const batch = [
      { account_id: account, event_type: 'x', idempotency_key: 'ok-1' },
      { account_id: account, event_type: 'x', status_code: 700, idempotency_key: 'bad-1' },
      { account_id: account, event_type: 'x', status_code: 700 },
    ];
    for (let attempt = 0; attempt < 3; attempt++) {
      expect((await recordEvents(db.pool, batch)).rejected.map((r) => [r.index, r.code])).toEqual([
        [1, 'out_of_range'],
        [2, 'out_of_range'],
      ]);
    }
    const { rows } = await db.pool.query(
      "select idempotency_key, count(*)::int as n from tally.rejected_events where account_id = $1 group by 1 order by 1 nulls last",
      [account],
    );
    expect(rows).toEqual([
      { idempotency_key: 'bad-1', n: 1 },
      { idempotency_key: null, n: 3 },
    ]);
  });

  it('items without a key are stored every time', async () => {
    const account = await createAccount(db.pool, 'Unkeyed');
    const batch = [{ account_id: account, event_type: 'x' }, { account_id: account, event_type: 'x' }];
    expect(await recordEvents(db.pool, batch)).toMatchObject({ accepted: 2, duplicates: 0 });
    expect(await recordEvents(db.pool, batch)).toMatchObject({ accepted: 2, duplicates: 0 });
    expect(await eventsOf(account)).toHaveLength(4);
  });

  it('within one batch the first item of a key wins; keys are per account', async () => {
    const [a, b] = [await createAccount(db.pool, 'Keys A'), await createAccount(db.pool, 'Keys B')];
    const result = await recordEvents(db.pool, [
      { account_id: a, event_type: 'first', idempotency_key: 'k1', quantity: 1 },
      { account_id: a, event_type: 'second', idempotency_key: 'k1', quantity: 2 },
      { account_id: b, event_type: 'other-account', idempotency_key: 'k1', quantity: 3 },
      { account_id: a, event_type: 'bad', idempotency_key: 'k2', files: -1 },
      { account_id: a, event_type: 'after-bad', idempotency_key: 'k2', quantity: 4 },
      { account_id: a, event_type: 'third', idempotency_key: 'k1', quantity: 5 },
    ]);
    // the later items of k1 carry other payloads: conflicts, reported with the kept event
    const firstId = (await db.pool.query("select id::text from tally.events where account_id = $1 and idempotency_key = 'k1'", [a])).rows[0].id;
    expect(result).toEqual({
      accepted: 3,
      duplicates: 0,
      conflicts: [
        expect.objectContaining({ index: 1, code: 'idempotency_conflict', event_id: firstId }),
        expect.objectContaining({ index: 5, code: 'idempotency_conflict', event_id: firstId }),
      ],
      rejected: [{ index: 3, code: 'out_of_range', message: expect.stringMatching(/files/) }],
    });
    expect(await eventsOf(a)).toEqual([
      { key: 'k1', quantity: '1.000000000000', event_type: 'first' },
      { key: 'k2', quantity: '4.000000000000', event_type: 'after-bad' },
    ]);
    expect(await eventsOf(b)).toEqual([{ key: 'k1', quantity: '3.000000000000', event_type: 'other-account' }]);
  });

  it('record_event returns the original event for a duplicate, whichever function stored it', async () => {
    const account = await createAccount(db.pool, 'Single');
    const first = await recordEvent(db.pool, { account_id: account, event_type: 'x', idempotency_key: 'one' });
    expect(first.duplicate).toBe(false);
    expect(await recordEvent(db.pool, { account_id: account, event_type: 'x', idempotency_key: 'one' })).toEqual({
      event_id: first.event_id,
      duplicate: true,
    });
    // the same key with another payload: still the original event, flagged as a conflict
    expect(await recordEvent(db.pool, { account_id: account, event_type: 'x', idempotency_key: 'one', quantity: 9 })).toEqual({
      event_id: first.event_id,
      duplicate: true,
      conflict: true,
    });
    expect(await recordEvents(db.pool, [{ account_id: account, event_type: 'x', idempotency_key: 'one' }])).toMatchObject({ accepted: 0, duplicates: 1 });

    // a microsecond timestamp, sent again in another offset: the same instant, so the same payload
    const at = new Date(Date.now() - 30 * DAY);
    const twoUtc = at.toISOString().replace('Z', '008Z');
    const twoAt = new Date(at.getTime() + 2 * 3_600_000).toISOString().replace('Z', '008+02:00');
    await recordEvents(db.pool, [{ account_id: account, event_type: 'y', idempotency_key: 'two', occurred_at: twoUtc }]);
    const again = await recordEvent(db.pool, { account_id: account, event_type: 'y', idempotency_key: 'two', occurred_at: twoAt });
    const { rows } = await db.pool.query("select id::text from tally.events where account_id = $1 and idempotency_key = 'two'", [account]);
    expect(again).toEqual({ event_id: rows[0].id, duplicate: true });
    expect(await eventsOf(account)).toHaveLength(2);
  });
});

/** A small deterministic generator, so a failing run can be replayed. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('concurrent writers', () => {
  it('8 concurrent writers sending overlapping batches produce exactly the expected totals', async () => {
    const accounts = [await createAccount(db.pool, 'Concurrent A'), await createAccount(db.pool, 'Concurrent B')];
    const KEYS = 150;
    // a key always carries the same content, so the totals do not depend on who wins it
    const milli = (k: number) => ((k % 7) + 1) * 1000 + (k % 4) * 250;
    const keyed = (account: string, k: number) => ({
      account_id: account,
      event_type: 'concurrent',
      idempotency_key: `key-${k}`,
      quantity: (milli(k) / 1000).toFixed(3),
      tokens_in: k,
    });
    const unkeyed = (account: string) => ({ account_id: account, event_type: 'concurrent', quantity: '0.5', tokens_in: 1 });

    type Item = ReturnType<typeof keyed> | ReturnType<typeof unkeyed>;
    const writers: Array<{ mode: 'batch' | 'single'; batches: Item[][] }> = [];
    for (let w = 0; w < 8; w += 1) {
      const rand = lcg(w + 1);
      const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!;
      const mode = w < 6 ? 'batch' : 'single';
      const batches: Item[][] = [];
      for (let b = 0; b < (mode === 'batch' ? 6 : 1); b += 1) {
        const items: Item[] = [];
        for (let i = 0; i < 40; i += 1) items.push(keyed(pick(accounts), Math.floor(rand() * KEYS)));
        items.push({ ...items[0]! }); // a duplicate inside the batch
        for (let i = 0; i < 5; i += 1) items.push(unkeyed(pick(accounts)));
        // shuffled, so writers claim shared keys in different array orders
        for (let i = items.length - 1; i > 0; i -= 1) {
          const j = Math.floor(rand() * (i + 1));
          [items[i], items[j]] = [items[j]!, items[i]!];
        }
        batches.push(items);
      }
      writers.push({ mode, batches });
    }

    const all = writers.flatMap((w) => w.batches.flat());
    const expected = accounts.map((account) => {
      const mine = all.filter((e) => e.account_id === account);
      const keys = new Set(mine.flatMap((e) => ('idempotency_key' in e ? [e.idempotency_key] : [])));
      const unkeyedCount = mine.filter((e) => !('idempotency_key' in e)).length;
      const quantityMilli = [...keys].reduce((s, k) => s + milli(Number(k.slice(4))), 0) + 500 * unkeyedCount;
      const tokens = [...keys].reduce((s, k) => s + Number(k.slice(4)), 0) + unkeyedCount;
      return { account, events: keys.size + unkeyedCount, keys: keys.size, quantity_milli: String(quantityMilli), tokens_in: String(tokens) };
    });
    const keyedSent = all.filter((e) => 'idempotency_key' in e).length;
    const distinctKeys = expected.reduce((s, e) => s + e.keys, 0);
    expect(keyedSent - distinctKeys).toBeGreaterThan(100); // the writers really do overlap

    const outcomes = await Promise.all(
      writers.map(async (w) => {
        let accepted = 0;
        let duplicates = 0;
        for (const batch of w.batches) {
          if (w.mode === 'batch') {
            const r = await recordEvents(db.pool, batch);
            expect(r.rejected).toEqual([]);
            accepted += r.accepted;
            duplicates += r.duplicates;
          } else {
            for (const item of batch) {
              const r = await recordEvent(db.pool, item);
              if (r.duplicate) duplicates += 1;
              else accepted += 1;
            }
          }
        }
        return { accepted, duplicates };
      }),
    );

    const { rows } = await db.pool.query(
      `select account_id as account, count(*)::int as events, count(idempotency_key)::int as keys,
              sum(quantity * 1000)::bigint::text as quantity_milli, sum(tokens_in)::text as tokens_in
       from tally.events where account_id = any($1::uuid[]) group by 1`,
      [accounts],
    );
    expect(rows.sort((x, y) => accounts.indexOf(x.account) - accounts.indexOf(y.account))).toEqual(expected);

    const accepted = outcomes.reduce((s, o) => s + o.accepted, 0);
    const duplicates = outcomes.reduce((s, o) => s + o.duplicates, 0);
    expect(accepted).toBe(expected.reduce((s, e) => s + e.events, 0));
    expect(duplicates).toBe(keyedSent - distinctKeys);
    expect(accepted + duplicates).toBe(all.length);

    const twice = await db.pool.query(
      'select account_id, idempotency_key from tally.events where account_id = any($1::uuid[]) and idempotency_key is not null group by 1, 2 having count(*) > 1',
      [accounts],
    );
    expect(twice.rows).toEqual([]);
    const claimed = await db.pool.query('select count(*)::int as n from tally.idempotency_keys where account_id = any($1::uuid[])', [accounts]);
    expect(claimed.rows[0].n).toBe(distinctKeys);
  });
});

describe('a key claimed by a transaction still open', () => {
  /** Waits until backend `pid` is blocked by backend `by` (a lock wait, not a clock). */
  async function blockedBy(pid: number, by: number): Promise<void> {
    await eventually(async () => {
      const { rows } = await db.pool.query('select $2::int = any(pg_blocking_pids($1::int)) as blocked', [pid, by]);
      if (!rows[0].blocked) throw new Error(`backend ${pid} is not blocked by ${by}`);
    });
  }

  /** Claims `item` in an open transaction; returns the holder and its backend pid. */
  async function holdKey(item: unknown) {
    const holder = await db.pool.connect();
    await holder.query('begin');
    await holder.query('set local role service_role');
    expect(await recordEventsOn(holder, [item])).toMatchObject({ accepted: 1 });
    const { rows } = await holder.query('select pg_backend_pid() as pid');
    return { holder, pid: rows[0].pid as number };
  }

  /** Runs `run` as service_role on its own connection, reporting the backend pid before it starts. */
  function startWriter<T>(run: (c: pg.PoolClient) => Promise<T>) {
    let reportPid: (pid: number) => void = () => undefined;
    const pid = new Promise<number>((resolve) => {
      reportPid = resolve;
    });
    const done = as(db.pool, service, async (c) => {
      reportPid((await c.query('select pg_backend_pid() as pid')).rows[0].pid);
      return run(c);
    });
    return { pid, done };
  }

  it('a second writer waits, then counts a duplicate once the first commits', async () => {
    const account = await createAccount(db.pool, 'Open commit');
    const item = { account_id: account, event_type: 'held', idempotency_key: 'held-1', quantity: 1 };
    const { holder, pid } = await holdKey(item);
    try {
      const writer = startWriter((c) => recordEventsOn(c, [item, { account_id: account, event_type: 'free', idempotency_key: 'free-1' }]));
      await blockedBy(await writer.pid, pid);
      await holder.query('commit');
      expect(await writer.done).toEqual({ accepted: 1, duplicates: 1, rejected: [] });
    } finally {
      holder.release();
    }
    expect(await eventsOf(account)).toEqual([
      { key: 'held-1', quantity: '1.000000000000', event_type: 'held' },
      { key: 'free-1', quantity: '1.000000000000', event_type: 'free' },
    ]);
  });

  it('record_event waiting on the key returns the committed event as a duplicate', async () => {
    const account = await createAccount(db.pool, 'Open single');
    const item = { account_id: account, event_type: 'held', idempotency_key: 'held-2' };
    const { holder, pid } = await holdKey(item);
    try {
      const writer = startWriter(async (c) => {
        const { rows } = await c.query('select * from tally.record_event(p_event => $1::jsonb)', [JSON.stringify(item)]);
        return recordEventRow.parse(rows[0]);
      });
      await blockedBy(await writer.pid, pid);
      await holder.query('commit');
      const { rows } = await db.pool.query('select id::text from tally.events where account_id = $1', [account]);
      expect(await writer.done).toEqual({ event_id: rows[0].id, duplicate: true });
    } finally {
      holder.release();
    }
  });

  it('a second writer waits, then stores the event once the first rolls back', async () => {
    const account = await createAccount(db.pool, 'Open rollback');
    const item = { account_id: account, event_type: 'held', idempotency_key: 'held-3', quantity: 1 };
    const { holder, pid } = await holdKey(item);
    try {
      const writer = startWriter((c) => recordEventsOn(c, [{ ...item, quantity: 2 }, { ...item, quantity: 2 }]));
      await blockedBy(await writer.pid, pid);
      await holder.query('rollback');
      expect(await writer.done).toEqual({ accepted: 1, duplicates: 1, rejected: [] });
    } finally {
      holder.release();
    }
    expect(await eventsOf(account)).toEqual([{ key: 'held-3', quantity: '2.000000000000', event_type: 'held' }]);
  });
});

describe('retention of idempotency keys', () => {
  it('purge_idempotency_keys forgets keys older than ingest.idempotency_retention, and only those', async () => {
    const account = await createAccount(db.pool, 'Retention');
    const batch = ['old-1', 'old-2', 'hours-old', 'fresh'].map((k) => ({ account_id: account, event_type: 'x', idempotency_key: k }));
    expect(await recordEvents(db.pool, batch)).toMatchObject({ accepted: 4 });
    const age = (keys: string[], interval: string) =>
      db.pool.query(`update tally.idempotency_keys set created_at = now() - $3::interval where account_id = $1 and idempotency_key = any($2)`, [
        account,
        keys,
        interval,
      ]);
    await age(['old-1', 'old-2'], '8 days');
    await age(['hours-old'], '2 hours');

    const purge = () =>
      as(db.pool, service, async (c) => {
        const { rows } = await c.query(
          `select r->'deleted' as deleted,
                  (r->>'cutoff')::timestamptz = now() - (select value::interval from tally.settings where name = 'ingest.idempotency_retention') as cutoff_ok
           from tally.purge_idempotency_keys() r`,
        );
        return rows[0];
      });
    expect(await purge()).toEqual({ deleted: 2, cutoff_ok: true });
    expect(await purge()).toEqual({ deleted: 0, cutoff_ok: true });

    // forgotten keys are accepted again; remembered ones are still duplicates
    expect(await recordEvents(db.pool, batch)).toMatchObject({ accepted: 2, duplicates: 2 });
    const { rows } = await db.pool.query('select idempotency_key as key, count(*)::int as n from tally.events where account_id = $1 group by 1 order by 1', [account]);
    expect(rows).toEqual([
      { key: 'fresh', n: 1 },
      { key: 'hours-old', n: 1 },
      { key: 'old-1', n: 2 },
      { key: 'old-2', n: 2 },
    ]);

    await setSetting(db.pool, 'ingest.idempotency_retention', '1 hour');
    try {
      expect(await purge()).toEqual({ deleted: 1, cutoff_ok: true });
    } finally {
      await setSetting(db.pool, 'ingest.idempotency_retention', null);
    }
    const left = await db.pool.query('select idempotency_key from tally.idempotency_keys where account_id = $1 order by 1', [account]);
    expect(left.rows.map((r) => r.idempotency_key)).toEqual(['fresh', 'old-1', 'old-2']);
  });

  it('only services purge keys or read them', async () => {
    const userId = await createUser(db.pool);
    await expect(as(db.pool, user(userId), (c) => c.query('select tally.purge_idempotency_keys()'))).rejects.toMatchObject({ code: '42501' });
    await expect(as(db.pool, user(userId), (c) => c.query('select * from tally.idempotency_keys'))).rejects.toMatchObject({ code: '42501' });
  });
});
