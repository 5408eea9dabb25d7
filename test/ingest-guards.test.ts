/**
 * Ingestion guards: no silent $0 (unpriced LLM events refused on request), no event
 * accepted only to be dropped by retention (past_retention), and an idempotency key
 * reused with a different payload reported as a conflict, not as a duplicate.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';
import { createAccount, DAY, importEvents, isoFromNow, lastRejectedId, recordEvent, recordEvents, setSetting } from './helpers/ledger.ts';
import { as, service } from './helpers/personas.ts';

let db: TestDatabase;
beforeAll(async () => {
  db = await migratedDatabase();
  await as(db.pool, service, (c) =>
    c.query(
      `select tally.set_model_price(p_provider => 'openai', p_model => 'gpt-4o', p_input_usd_per_mtok => 2.5,
                                    p_output_usd_per_mtok => 10, p_effective_from => '2020-01-01Z')`,
    ),
  );
});
afterAll(async () => {
  await db?.drop();
});

async function rejectedSince(after: string) {
  const { rows } = await db.pool.query(
    'select source, item_index::int, code, message, payload, idempotency_key, account_id from tally.rejected_events where id > $1 order by id',
    [after],
  );
  return rows as Array<{ source: string; item_index: number; code: string; message: string; payload: unknown; idempotency_key: string | null; account_id: string | null }>;
}

async function eventsOf(account: string) {
  const { rows } = await db.pool.query('select id::text, model, cost_usd::text, quantity::text from tally.events where account_id = $1 order by id', [account]);
  return rows as Array<{ id: string; model: string | null; cost_usd: string | null; quantity: string }>;
}

describe('unpriced LLM events', () => {
  const llm = (account: string, extra: Record<string, unknown> = {}) => ({
    account_id: account, event_type: 'llm', provider: 'openai', tokens_in: 1000, tokens_out: 100, ...extra,
  });

  it('are accepted with a NULL cost by default', async () => {
    const a = await createAccount(db.pool, 'Unpriced default');
    expect(await recordEvents(db.pool, [llm(a, { model: 'gpt4o' }), llm(a, { model: 'gpt-4o' })])).toEqual({ accepted: 2, duplicates: 0, rejected: [] });
    expect((await eventsOf(a)).map((e) => [e.model, e.cost_usd])).toEqual([['gpt4o', null], ['gpt-4o', '0.003500000000']]);
  });

  it('are refused with unpriced_model when ingest.refuse_unpriced_models is 1, on every path, and kept', async () => {
    const a = await createAccount(db.pool, 'Unpriced refused');
    await as(db.pool, service, (c) =>
      c.query(`select tally.set_model_price(p_provider => 'openai', p_model => 'late', p_input_usd_per_mtok => 1,
                                            p_output_usd_per_mtok => 1, p_effective_from => $1::timestamptz)`, [isoFromNow(-10 * DAY)]),
    );
    expect(await setSetting(db.pool, 'ingest.refuse_unpriced_models', '1')).toBe('1');
    try {
      const since = await lastRejectedId(db.pool);
      const result = await recordEvents(db.pool, [
        llm(a, { model: 'gpt4o', idempotency_key: 'typo' }), // a typo: refused
        llm(a, { model: 'gpt-4o' }), // priced: stored
        llm(a, { model: 'gpt4o', cost_usd: '0.5' }), // the caller gave the cost: nothing to price
        llm(a, { model: 'gpt4o', cached: true }), // cached: costs 0, but what it saved is unknown
        llm(a, { model: 'gpt4o', cached: true, potential_cost_usd: '0.2' }), // cached with its potential given
        { account_id: a, event_type: 'upload', bytes: 10 }, // not an LLM event
        llm(a, { model: 'late', occurred_at: isoFromNow(-20 * DAY) }), // before the model's first price
      ]);
      expect(result.accepted).toBe(4);
      expect(result.rejected.map((r) => [r.index, r.code])).toEqual([[0, 'unpriced_model'], [3, 'unpriced_model'], [6, 'unpriced_model']]);
      expect(result.rejected[0]?.message).toMatch(/^model: no price for provider 'openai', model 'gpt4o' at /);
      const kept = (await rejectedSince(since)).sort((x, y) => x.item_index - y.item_index);
      expect(kept.map((r) => [r.source, r.item_index, r.code, r.idempotency_key, r.account_id])).toEqual([
        ['record_events', 0, 'unpriced_model', 'typo', a],
        ['record_events', 3, 'unpriced_model', null, a],
        ['record_events', 6, 'unpriced_model', null, a],
      ]);
      expect(kept[0]?.payload).toEqual(llm(a, { model: 'gpt4o', idempotency_key: 'typo' }));

      // record_event raises it (22023, code in HINT); import_events refuses it by line
      await expect(recordEvent(db.pool, llm(a, { model: 'gpt4o' }))).rejects.toMatchObject({ code: '22023', hint: 'unpriced_model' });
      const imported = await importEvents(db.pool, [llm(a, { model: 'gpt-4o' }), llm(a, { model: 'gpt4o' })], 'guards.ndjson', 10);
      expect(imported.accepted).toBe(1);
      expect(imported.rejected.map((r) => [r.index, r.code])).toEqual([[11, 'unpriced_model']]);
    } finally {
      await setSetting(db.pool, 'ingest.refuse_unpriced_models', null);
    }
    expect(await recordEvents(db.pool, [llm(a, { model: 'gpt4o' })])).toMatchObject({ accepted: 1 });
  });

  it('a retry of an event stored before the setting was turned on is a duplicate, not a refusal', async () => {
    const a = await createAccount(db.pool, 'Retry');
    const item = llm(a, { model: 'not-priced', idempotency_key: 'stored-before' });
    expect(await recordEvents(db.pool, [item])).toMatchObject({ accepted: 1 });
    const since = await lastRejectedId(db.pool);
    await setSetting(db.pool, 'ingest.refuse_unpriced_models', '1');
    try {
      expect(await recordEvents(db.pool, [item, llm(a, { model: 'not-priced', idempotency_key: 'new-one' })])).toMatchObject({
        accepted: 0,
        duplicates: 1,
        rejected: [{ index: 1, code: 'unpriced_model' }],
      });
      expect((await rejectedSince(since)).map((r) => r.idempotency_key)).toEqual(['new-one']);
    } finally {
      await setSetting(db.pool, 'ingest.refuse_unpriced_models', null);
    }
  });

  it('the setting takes only 0 or 1', async () => {
    await expect(setSetting(db.pool, 'ingest.refuse_unpriced_models', '2')).rejects.toMatchObject({ code: '22023', hint: 'invalid_parameter' });
  });
});

describe('events older than retention.events', () => {
  it('are refused with past_retention on every path, and kept', async () => {
    const a = await createAccount(db.pool, 'Old');
    const since = await lastRejectedId(db.pool);
    const result = await recordEvents(db.pool, [
      { account_id: a, event_type: 'x', occurred_at: isoFromNow(-401 * DAY), idempotency_key: 'too-old' },
      { account_id: a, event_type: 'x', occurred_at: isoFromNow(-399 * DAY) },
      { account_id: a, event_type: 'x' },
    ]);
    expect(result.accepted).toBe(2);
    expect(result.rejected).toEqual([
      { index: 0, code: 'past_retention', message: expect.stringMatching(/^occurred_at: .* is older than the retention of raw events \(setting retention\.events = 400 days\)/) },
    ]);
    expect((await rejectedSince(since)).map((r) => [r.code, r.idempotency_key, r.account_id])).toEqual([['past_retention', 'too-old', a]]);
    // the key of a refused item is not claimed: the item can be sent again once it is valid
    expect(await recordEvents(db.pool, [{ account_id: a, event_type: 'x', idempotency_key: 'too-old' }])).toEqual({ accepted: 1, duplicates: 0, rejected: [] });

    await expect(recordEvent(db.pool, { account_id: a, event_type: 'x', occurred_at: isoFromNow(-500 * DAY) })).rejects.toMatchObject({
      code: '22023',
      hint: 'past_retention',
    });
    const imported = await importEvents(db.pool, [{ account_id: a, event_type: 'x', occurred_at: '2001-01-01T00:00:00Z' }], 'old.ndjson');
    expect(imported.rejected.map((r) => [r.index, r.code])).toEqual([[1, 'past_retention']]);
  });

  it('follows the setting', async () => {
    const a = await createAccount(db.pool, 'Longer');
    await setSetting(db.pool, 'retention.events', '1000 days');
    try {
      expect(await recordEvents(db.pool, [{ account_id: a, event_type: 'x', occurred_at: isoFromNow(-900 * DAY) }])).toMatchObject({ accepted: 1, rejected: [] });
    } finally {
      await setSetting(db.pool, 'retention.events', null);
    }
  });
});

describe('an idempotency key reused with a different payload', () => {
  it('keeps the first event and reports a conflict, with the stored event id, in the result and in rejected_events', async () => {
    const a = await createAccount(db.pool, 'Conflicts');
    const first = { account_id: a, event_type: 'upload', bytes: 10, occurred_at: '2026-01-05T10:00:00Z', idempotency_key: 'k1' };
    expect(await recordEvents(db.pool, [first])).toEqual({ accepted: 1, duplicates: 0, rejected: [] });
    const [stored] = await eventsOf(a);

    const since = await lastRejectedId(db.pool);
    // the same payload, spelled differently: key order, a number as a string, another offset
    const sameAgain = { idempotency_key: 'k1', occurred_at: '2026-01-05T11:00:00+01:00', bytes: '10', event_type: 'upload', account_id: a };
    const other = { ...first, bytes: 11 };
    expect(await recordEvents(db.pool, [sameAgain, other])).toEqual({
      accepted: 0,
      duplicates: 1,
      conflicts: [
        {
          index: 1,
          code: 'idempotency_conflict',
          message: `idempotency_key: 'k1' was already used by event ${stored?.id} with a different payload; that event is kept and this item was not stored`,
          event_id: stored?.id,
        },
      ],
      rejected: [],
    });
    expect(await eventsOf(a)).toHaveLength(1);
    const kept = await rejectedSince(since);
    expect(kept.map((r) => [r.source, r.item_index, r.code, r.idempotency_key, r.account_id])).toEqual([['record_events', 1, 'idempotency_conflict', 'k1', a]]);
    expect(kept[0]?.payload).toEqual(other);
    expect(kept[0]?.message).toContain(`event ${stored?.id}`);

    // the same conflicting retry again: reported again, kept once
    expect((await recordEvents(db.pool, [other])).conflicts).toHaveLength(1);
    expect(await rejectedSince(since)).toHaveLength(1);
  });

  it('within one batch: the first item wins, a later one with another payload is a conflict', async () => {
    const a = await createAccount(db.pool, 'Batch conflicts');
    const item = (quantity: number, key = 'b1') => ({ account_id: a, event_type: 'x', quantity, idempotency_key: key });
    const result = await recordEvents(db.pool, [item(1), item(1), item(2), item(5, 'b2')]);
    const [event] = await eventsOf(a);
    expect(result).toMatchObject({ accepted: 2, duplicates: 1, rejected: [] });
    expect(result).toHaveProperty('conflicts', [expect.objectContaining({ index: 2, event_id: event?.id })]);
    expect((await eventsOf(a)).map((e) => e.quantity)).toEqual(['1.000000000000', '5.000000000000']);
  });

  it('compares what was given, not what Tally filled in (a defaulted occurred_at, a computed cost)', async () => {
    const a = await createAccount(db.pool, 'Defaults');
    const item = { account_id: a, event_type: 'llm', provider: 'openai', model: 'gpt-4o', tokens_in: 5, idempotency_key: 'd1' };
    expect((await recordEvents(db.pool, [item])).accepted).toBe(1);
    await as(db.pool, service, (c) =>
      c.query(`select tally.set_model_price(p_provider => 'openai', p_model => 'gpt-4o', p_input_usd_per_mtok => 3, p_output_usd_per_mtok => 12)`),
    );
    expect(await recordEvents(db.pool, [item])).toEqual({ accepted: 0, duplicates: 1, rejected: [] });
    // but giving a cost the first call did not give is another payload
    expect((await recordEvents(db.pool, [{ ...item, cost_usd: '0.01' }])).conflicts).toHaveLength(1);
  });

  it('record_event returns the stored event flagged as a conflict; import_events reports it by line', async () => {
    const a = await createAccount(db.pool, 'Single conflict');
    const first = await recordEvent(db.pool, { account_id: a, event_type: 'x', idempotency_key: 's1', properties: { a: 1, b: [1, 2] } });
    expect(await recordEvent(db.pool, { account_id: a, event_type: 'x', idempotency_key: 's1', properties: { b: [1, 2], a: 1 } })).toEqual({
      event_id: first.event_id,
      duplicate: true,
    });
    const since = await lastRejectedId(db.pool);
    expect(await recordEvent(db.pool, { account_id: a, event_type: 'x', idempotency_key: 's1', properties: { a: 2 } })).toEqual({
      event_id: first.event_id,
      duplicate: true,
      conflict: true,
    });
    expect((await rejectedSince(since)).map((r) => [r.source, r.code])).toEqual([['record_event', 'idempotency_conflict']]);

    const imported = await importEvents(db.pool, [{ account_id: a, event_type: 'y', idempotency_key: 's1' }], 'conflict.ndjson', 7);
    expect(imported).toEqual({
      accepted: 0,
      duplicates: 0,
      conflicts: [expect.objectContaining({ index: 7, code: 'idempotency_conflict', event_id: first.event_id })],
      rejected: [],
    });
  });

  it('a key claimed without a payload hash (before payloads were compared) stays a plain duplicate', async () => {
    const a = await createAccount(db.pool, 'Legacy');
    await recordEvents(db.pool, [{ account_id: a, event_type: 'x', idempotency_key: 'old' }]);
    await db.pool.query("update tally.idempotency_keys set payload_fingerprint = null where account_id = $1 and idempotency_key = 'old'", [a]);
    expect(await recordEvents(db.pool, [{ account_id: a, event_type: 'other', idempotency_key: 'old' }])).toEqual({ accepted: 0, duplicates: 1, rejected: [] });
  });

  it('a key held by an open transaction: the conflict is seen once that transaction commits', async () => {
    const a = await createAccount(db.pool, 'Open conflict');
    const holder = await db.pool.connect();
    try {
      await holder.query('begin');
      await holder.query('set local role service_role');
      await holder.query('select tally.record_events(p_events => $1::jsonb)', [JSON.stringify([{ account_id: a, event_type: 'x', quantity: 1, idempotency_key: 'h' }])]);
      const { rows: [{ pid }] } = await holder.query('select pg_backend_pid() as pid');
      const writer = recordEvents(db.pool, [{ account_id: a, event_type: 'x', quantity: 2, idempotency_key: 'h' }]);
      // the writer waits on the key until the holder commits
      await vi.waitFor(async () => {
        const { rows } = await db.pool.query('select count(*)::int as n from pg_stat_activity where $1 = any(pg_blocking_pids(pid))', [pid]);
        expect(rows[0].n).toBe(1);
      }, { timeout: 30_000, interval: 20 });
      await holder.query('commit');
      const result = await writer;
      expect(result).toMatchObject({ accepted: 0, duplicates: 0, rejected: [] });
      expect(result).toHaveProperty('conflicts', [expect.objectContaining({ index: 0, event_id: (await eventsOf(a))[0]?.id })]);
    } finally {
      await holder.query('rollback').catch(() => undefined);
      holder.release();
    }
  });
});
