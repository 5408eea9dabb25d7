/**
 * Helpers for the ledger tests: accounts and keys made as a service would make them, and
 * the ingestion functions called the way the TS client calls them (named arguments,
 * explicit casts, every result parsed).
 */
import type pg from 'pg';
import { z } from 'zod';
import { as, service } from './personas.ts';

/** A pool, a pooled client or a client: anything that runs a query. */
export interface Queryable {
  query(text: string, values?: unknown[]): Promise<pg.QueryResult>;
}

const conflict = z.strictObject({ index: z.number().int(), code: z.literal('idempotency_conflict'), message: z.string(), event_id: z.string().regex(/^\d+$/).nullable() });

/**
 * The ingestion result. `conflicts` (keys reused with another payload) is left out when it
 * is empty, so a test that expects none reads as it did before conflicts were reported; a
 * non-empty list is kept and fails such a test.
 */
export const ingestResult = z
  .strictObject({
    accepted: z.number().int().nonnegative(),
    duplicates: z.number().int().nonnegative(),
    conflicts: z.array(conflict),
    rejected: z.array(z.strictObject({ index: z.number().int(), code: z.string(), message: z.string() })),
  })
  .transform(({ conflicts, ...rest }): typeof rest & { conflicts?: typeof conflicts } => (conflicts.length > 0 ? { ...rest, conflicts } : rest));
export type IngestResult = z.output<typeof ingestResult>;

/** The JSON text sent for `events` (undefined sends SQL NULL). */
const asJson = (value: unknown): string | null => (value === undefined ? null : JSON.stringify(value));

/** tally.record_events on `q` as it is (a superuser pool, or a client already in a persona). */
export async function recordEventsOn(q: Queryable, events: unknown): Promise<IngestResult> {
  const { rows } = await q.query('select tally.record_events(p_events => $1::jsonb) as result', [asJson(events)]);
  return ingestResult.parse(rows[0]?.result);
}

/** tally.record_events as service_role, the way PostgREST runs an RPC. */
export const recordEvents = (pool: pg.Pool, events: unknown): Promise<IngestResult> =>
  as(pool, service, (c) => recordEventsOn(c, events));

/** record_event's row; `conflict` is left out when false (see ingestResult). */
export const recordEventRow = z
  .strictObject({ event_id: z.string().regex(/^\d+$/), duplicate: z.boolean(), conflict: z.boolean() })
  .transform(({ conflict, ...rest }) => (conflict ? { ...rest, conflict } : rest));

/** tally.record_event as service_role: the one row it returns. */
export async function recordEvent(pool: pg.Pool, event: unknown): Promise<z.infer<typeof recordEventRow>> {
  const { rows } = await as(pool, service, (c) => c.query('select * from tally.record_event(p_event => $1::jsonb)', [asJson(event)]));
  expect1(rows);
  return recordEventRow.parse(rows[0]);
}

export async function importEvents(pool: pg.Pool, events: unknown, source: string, firstIndex?: number): Promise<IngestResult> {
  const { rows } = await as(pool, service, (c) =>
    c.query('select tally.import_events(p_events => $1::jsonb, p_source => $2::text, p_first_index => $3::bigint) as result', [
      asJson(events),
      source,
      firstIndex ?? 1,
    ]),
  );
  return ingestResult.parse(rows[0]?.result);
}

function expect1(rows: unknown[]): void {
  if (rows.length !== 1) throw new Error(`expected exactly one row, got ${rows.length}`);
}

/** A new account (as a service), optionally owned by a user; returns its id. */
export async function createAccount(pool: pg.Pool, name = 'Acme', ownerId: string | null = null, timezone = 'UTC'): Promise<string> {
  const { rows } = await as(pool, service, (c) =>
    c.query('select id from tally.create_account(p_name => $1::text, p_owner_id => $2::uuid, p_timezone => $3::text)', [name, ownerId, timezone]),
  );
  return z.uuid().parse(rows[0]?.id);
}

export const apiKeyRow = z.object({ id: z.uuid(), account_id: z.uuid(), secret: z.string(), prefix: z.string() });

/** A new API key of the account (as a service). */
export async function createApiKey(pool: pg.Pool, accountId: string, name = 'server', expiresAt: string | null = null) {
  const { rows } = await as(pool, service, (c) =>
    c.query('select * from tally.create_api_key(p_account_id => $1::uuid, p_name => $2::text, p_expires_at => $3::timestamptz)', [
      accountId,
      name,
      expiresAt,
    ]),
  );
  return apiKeyRow.parse(rows[0]);
}

/** Sets a setting as a service (null restores the default); returns the stored value. */
export async function setSetting(pool: pg.Pool, name: string, value: string | null): Promise<string> {
  const { rows } = await as(pool, service, (c) => c.query('select value from tally.set_setting(p_name => $1::text, p_value => $2::text)', [name, value]));
  return z.string().parse(rows[0]?.value);
}

/** Highest id in tally.rejected_events, to read only the rows a test adds after it. */
export async function lastRejectedId(pool: pg.Pool): Promise<string> {
  const { rows } = await pool.query('select coalesce(max(id), 0)::text as id from tally.rejected_events');
  return z.string().parse(rows[0]?.id);
}

/** An ISO 8601 UTC timestamp `ms` milliseconds from now (negative: in the past). */
export const isoFromNow = (ms: number): string => new Date(Date.now() + ms).toISOString();

export const MINUTE = 60_000;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;
