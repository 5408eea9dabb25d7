/**
 * Events in and out of the ledger: the camelCase event the app writes, its snake_case
 * wire form (what tally.record_events validates), and the ingestion wrappers.
 */
import { z } from 'zod';
import { callRow, callValue, parseInput, type Queryable } from './sql.ts';
import { bigintId, ingestResult, moneyInput, uuid, type IngestResult } from './schemas.ts';

/**
 * camelCase field → the database's field name: the one list of event fields. UsageEvent,
 * the input schema, the CSV columns of `tally import` and the meters' mappings follow it
 * (the first two are checked against it when compiling; test/event-fields.test.ts checks
 * it against the validator in SQL).
 */
export const EVENT_FIELDS = {
  accountId: 'account_id',
  apiKeyId: 'api_key_id',
  occurredAt: 'occurred_at',
  eventType: 'event_type',
  provider: 'provider',
  model: 'model',
  endpoint: 'endpoint',
  method: 'method',
  statusCode: 'status_code',
  success: 'success',
  errorMessage: 'error_message',
  fileType: 'file_type',
  files: 'files',
  bytes: 'bytes',
  tokensIn: 'tokens_in',
  tokensOut: 'tokens_out',
  cached: 'cached',
  costUsd: 'cost_usd',
  potentialCostUsd: 'potential_cost_usd',
  latencyMs: 'latency_ms',
  quantity: 'quantity',
  idempotencyKey: 'idempotency_key',
  properties: 'properties',
} as const;

type Integer = number | bigint | string;
type Decimal = number | string;

/** One usage event. Either accountId or apiKeyId is required; the database checks ranges and limits. */
export interface UsageEvent {
  accountId?: string | null;
  apiKeyId?: string | null;
  /** When it happened (default: when the database receives it; the UsageTracker stamps track() time). */
  occurredAt?: Date | string | null;
  eventType: string;
  provider?: string | null;
  model?: string | null;
  endpoint?: string | null;
  method?: string | null;
  statusCode?: number | string | null;
  success?: boolean | null;
  errorMessage?: string | null;
  fileType?: string | null;
  files?: Integer | null;
  bytes?: Integer | null;
  tokensIn?: Integer | null;
  tokensOut?: Integer | null;
  cached?: boolean | null;
  /** Decimal string (lossless) or number. */
  costUsd?: Decimal | null;
  potentialCostUsd?: Decimal | null;
  latencyMs?: number | null;
  quantity?: Decimal | null;
  /** 1-255 characters, unique per account for the idempotency window (default 7 days). */
  idempotencyKey?: string | null;
  properties?: Record<string, unknown> | null;
}

const integerInput = z.union([z.number(), z.bigint(), z.string().regex(/^\s*[0-9]+\s*$/, 'must be a whole number')]);

// UsageEvent names exactly the fields of EVENT_FIELDS (a compile error otherwise).
type SameKeys<A, B> = [Exclude<keyof A, keyof B> | Exclude<keyof B, keyof A>] extends [never] ? true : false;
void (true satisfies SameKeys<UsageEvent, typeof EVENT_FIELDS>);

/** Types only: ranges, limits and tenants are the database's to check (its limits are settings). */
export const usageEventInput = z.strictObject({
  accountId: uuid.nullish(),
  apiKeyId: uuid.nullish(),
  occurredAt: z.union([z.date(), z.string()]).nullish(),
  eventType: z.string(),
  provider: z.string().nullish(),
  model: z.string().nullish(),
  endpoint: z.string().nullish(),
  method: z.string().nullish(),
  statusCode: z.union([z.number(), z.string()]).nullish(),
  success: z.boolean().nullish(),
  errorMessage: z.string().nullish(),
  fileType: z.string().nullish(),
  files: integerInput.nullish(),
  bytes: integerInput.nullish(),
  tokensIn: integerInput.nullish(),
  tokensOut: integerInput.nullish(),
  cached: z.boolean().nullish(),
  costUsd: moneyInput.nullish(),
  potentialCostUsd: moneyInput.nullish(),
  latencyMs: z.number().nullish(),
  quantity: moneyInput.nullish(),
  idempotencyKey: z.string().nullish(),
  properties: z.record(z.string(), z.unknown()).nullish(),
} satisfies Record<keyof typeof EVENT_FIELDS, z.ZodType>);

/** A JSON-ready value: Dates as ISO text, bigints as digit strings (the database reads both). */
function wireValue(value: unknown): unknown {
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? String(value) : value.toISOString();
  if (typeof value === 'bigint') return value.toString();
  return value;
}

/**
 * The wire form of an event: snake_case names, undefined fields left out. A key that is
 * not a known camelCase field is passed through unchanged, so the database refuses it
 * with unknown_field (and keeps the item) instead of the client dropping it quietly.
 */
export function toWireEvent(event: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(event)) {
    if (value === undefined) continue;
    const name = (EVENT_FIELDS as Record<string, string>)[key] ?? key;
    out[name] = wireValue(value);
  }
  return out;
}

const eventsInput = z.array(usageEventInput);

/** record_events on a JSON array already serialised (the UsageTracker's path: no second validation or copy). */
export function recordEventsJson(q: Queryable, eventsJson: string): Promise<IngestResult> {
  return callValue(q, 'record_events', [['p_events', eventsJson, 'jsonb']], ingestResult);
}

/** import_events on a JSON array already serialised (wire form): refused items kept under source 'import:<source>'. */
export function importEventsJson(q: Queryable, eventsJson: string, source: string, firstIndex?: number | bigint): Promise<IngestResult> {
  return callValue(
    q,
    'import_events',
    [
      ['p_events', eventsJson, 'jsonb'],
      ['p_source', source, 'text'],
      ['p_first_index', firstIndex?.toString(), 'bigint'],
    ],
    ingestResult,
  );
}

export function eventsApi(q: Queryable) {
  return {
    /**
     * Records a batch (at most the setting ingest.max_batch, default 10000) in one round trip.
     * Invalid items are refused one by one (and kept in tally.rejected_events); valid siblings are stored.
     */
    async recordEvents(events: readonly UsageEvent[]): Promise<IngestResult> {
      const parsed = parseInput('recordEvents', eventsInput, events);
      return recordEventsJson(q, JSON.stringify(parsed.map(toWireEvent)));
    },

    /**
     * Records one event, raising (InvalidEventError, ApiKeyError, NotFoundError) if it is invalid. Returns the event id as a
     * decimal string. For a key already used, the stored event's id with `duplicate: true`; `conflict: true` as well when
     * that event's payload differs from this one (this one is not stored, and is kept in tally.rejected_events).
     */
    async recordEvent(event: UsageEvent): Promise<{ eventId: string; duplicate: boolean; conflict: boolean }> {
      const parsed = parseInput('recordEvent', usageEventInput, event);
      return callRow(
        q,
        'record_event',
        [['p_event', JSON.stringify(toWireEvent(parsed)), 'jsonb']],
        z
          .object({ event_id: bigintId, duplicate: z.boolean(), conflict: z.boolean() })
          .transform((r) => ({ eventId: r.event_id, duplicate: r.duplicate, conflict: r.conflict })),
      );
    },

    /** Bulk load: record_events semantics, rejected items kept under source 'import:<source>', indexed from firstIndex (default 1). */
    async importEvents(input: { events: readonly UsageEvent[]; source: string; firstIndex?: number | bigint }): Promise<IngestResult> {
      const parsed = parseInput(
        'importEvents',
        z.strictObject({
          events: eventsInput,
          source: z.string(),
          firstIndex: z.union([z.number().int(), z.bigint()]).optional(),
        }),
        input,
      );
      return importEventsJson(q, JSON.stringify(parsed.events.map(toWireEvent)), parsed.source, parsed.firstIndex);
    },
  };
}
