/**
 * One event-field list: EVENT_FIELDS (src/client/events.ts). The validator in SQL
 * (tally._parse_events) knows exactly its wire names, every one of them is taken as a known
 * field by record_events, and the CSV columns of `tally import` are the same list.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EVENT_FIELDS } from '../src/client/events.ts';
import { EVENT_FIELD_NAMES } from '../src/ingest/import-input.ts';
import { IMPORT_HELP } from '../src/cli/import.ts';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';
import { createAccount, recordEvents } from './helpers/ledger.ts';

let db: TestDatabase;
beforeAll(async () => {
  db = await migratedDatabase();
});
afterAll(async () => {
  await db?.drop();
});

const WIRE = Object.values(EVENT_FIELDS);

describe('the event fields', () => {
  it('tally._parse_events knows exactly the wire names of EVENT_FIELDS', async () => {
    const { rows } = await db.pool.query(
      "select p.prosrc from pg_proc p where p.oid = 'tally._parse_events(jsonb, bigint)'::regprocedure",
    );
    // the list the unknown_field check subtracts from each item
    const known = /unknown_field\|%s: unknown field', \(SELECT min\(k\) FROM jsonb_object_keys\(i\.e - '\{([a-z_,]+)\}'::text\[\]\)/.exec(rows[0].prosrc);
    expect(known, 'the unknown_field check in tally._parse_events').not.toBeNull();
    expect(known![1]!.split(',').sort()).toEqual([...WIRE].sort());
  });

  it('record_events takes every one of them as a known field, and refuses a name outside the list', async () => {
    const account = await createAccount(db.pool, 'Fields');
    // a value of the wrong type for every field: refused for its value, never as unknown_field
    const items = WIRE.filter((f) => f !== 'account_id' && f !== 'event_type').map((f) => ({ account_id: account, event_type: 'x', [f]: { wrong: true } }));
    const result = await recordEvents(db.pool, [...items, { account_id: account, event_type: 'x', token_in: 1 }]);
    expect(result.rejected.filter((r) => r.code === 'unknown_field').map((r) => r.index)).toEqual([items.length]);
  });

  it('the CSV columns of tally import are the same list, in the same order', () => {
    expect(EVENT_FIELD_NAMES).toEqual(WIRE);
    // the lines after "Columns:" that hold only field names
    const listed = /Columns:\n((?: {10}[a-z_]+(?: [a-z_]+)*\n)+)/.exec(IMPORT_HELP)?.[1]?.trim().split(/\s+/);
    expect(listed).toEqual(WIRE);
  });
});
