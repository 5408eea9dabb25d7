/**
 * Zod building blocks shared by the wrappers: the value rules at the TS boundary.
 *
 * - Money and other numeric(24,12) values are decimal strings, exactly as stored.
 * - Counts (accepted, repriced, deleted, ...) are numbers; they can never reach 2^53 in
 *   practice, and if one ever did the row is refused (InvalidResponseError) rather than
 *   rounded. Identifiers drawn from a bigint sequence (event ids) are decimal strings,
 *   always, because they can exceed 2^53 and must round-trip exactly.
 * - Timestamps come back as Date; they go in as a Date or an ISO 8601 string with an offset.
 */
import { z } from 'zod';

/** The UUID shape the database's validator accepts (any version). */
export const uuid = z.string().regex(/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/, 'must be a UUID');

/** A non-negative decimal, as a string or a finite number; sent as text so nothing is rounded on the way. */
export const moneyInput = z.union([
  z.string().regex(/^\s*[0-9]{1,30}(\.[0-9]{1,30})?\s*$/, 'must be a non-negative decimal such as "0.0012"'),
  z.number().finite().nonnegative(),
]);
export const moneyToText = (v: string | number): string => (typeof v === 'number' ? String(v) : v.trim());

/** An instant, as a Date or an ISO 8601 string with an explicit offset; sent as ISO text. */
export const instantInput = z
  .union([z.date(), z.iso.datetime({ offset: true, local: false })])
  .refine((v) => !(v instanceof Date) || !Number.isNaN(v.getTime()), 'must be a valid date')
  .transform((v) => (v instanceof Date ? v.toISOString() : v));

/** Decimal text from the database (numeric read exactly). */
export const decimal = z.string().regex(/^-?[0-9]+(\.[0-9]+)?$/, 'must be decimal text');

/** A count from a bigint column or a JSON number: a number, refused if it does not fit 2^53. */
export const count = z
  .union([z.number().int(), z.string().regex(/^-?[0-9]+$/)])
  .transform((v, ctx) => {
    const n = typeof v === 'number' ? v : Number(v);
    if (!Number.isSafeInteger(n)) {
      ctx.addIssue({ code: 'custom', message: `count ${v} does not fit in 2^53` });
      return z.NEVER;
    }
    return n;
  });

/** A bigint identifier (event id): always a decimal string. */
export const bigintId = z
  .union([z.string().regex(/^[0-9]+$/), z.number().int().nonnegative()])
  .transform((v) => String(v));

/** A timestamptz from a row (node-postgres Date) or from jsonb (ISO text). */
export const timestamp = z.union([z.date(), z.string().min(1)]).transform((v, ctx) => {
  const d = v instanceof Date ? v : new Date(v);
  if (Number.isNaN(d.getTime())) {
    ctx.addIssue({ code: 'custom', message: `not a timestamp: ${String(v)}` });
    return z.NEVER;
  }
  return d;
});

export const role = z.enum(['owner', 'admin', 'member', 'viewer']);
export type Role = z.infer<typeof role>;

/**
 * {accepted, duplicates, conflicts, rejected} from record_events / import_events. Every item
 * is in exactly one of them: stored, a duplicate (its idempotency key was already used with
 * the same payload), a conflict (the key was already used with a different payload: the
 * first event is kept, `eventId`, and this item is not stored), or refused.
 */
export const ingestResult = z
  .object({
    accepted: count,
    duplicates: count,
    conflicts: z
      .array(z.object({ index: count, code: z.string(), message: z.string(), event_id: bigintId.nullable() }))
      .default([]),
    rejected: z.array(z.object({ index: count, code: z.string(), message: z.string() })),
  })
  .transform((r) => ({
    accepted: r.accepted,
    duplicates: r.duplicates,
    conflicts: r.conflicts.map((c) => ({ index: c.index, code: c.code, message: c.message, eventId: c.event_id })),
    rejected: r.rejected,
  }));
export type IngestResult = z.output<typeof ingestResult>;

/** The aggregate buckets a correction rebuilt, per grain ('{}' when none needed it). */
export const rebuiltBuckets = z
  .object({ hourly: count.optional(), daily: count.optional(), monthly: count.optional() })
  .transform((r) => ({ hourly: r.hourly ?? 0, daily: r.daily ?? 0, monthly: r.monthly ?? 0 }));
export type RebuiltBuckets = z.output<typeof rebuiltBuckets>;
export type Rejection = IngestResult['rejected'][number];
/** An item whose idempotency key was already used with a different payload; `eventId` is the stored event (null if it is gone). */
export type IdempotencyConflict = IngestResult['conflicts'][number];
