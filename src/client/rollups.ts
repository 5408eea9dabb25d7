/**
 * The rollups: tally.run_rollups, verify_rollups, void_events, recompute_rollups,
 * rollup_status and unpriced_models. Service callers only (the database refuses everyone else with 42501).
 *
 * The functions answer in jsonb; those results are read with every number as its exact
 * text, so money (cost_usd, potential_cost_usd, quantity) is a decimal string, counts are
 * numbers (refused if past 2^53), and event ids (watermark, newest event id) are decimal
 * strings, as everywhere in the client.
 */
import { z } from 'zod';
import { callRows, callValue, parseInput, selectRows, type Queryable } from './sql.ts';
import { bigintId, count, decimal, instantInput, rebuiltBuckets, timestamp, uuid } from './schemas.ts';

const EXACT = { exactJson: true } as const;

/** A float-valued measure (seconds, milliseconds) from exact JSON text: a number. */
const measure = z.union([z.number(), z.string().regex(/^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/)]).transform(Number);

export type Grain = 'hourly' | 'daily' | 'monthly';

export type { RebuiltBuckets } from './schemas.ts';

// ---------------------------------------------------------------------------------------
// run_rollups
// ---------------------------------------------------------------------------------------

const runResult = z
  .object({
    skipped: z.boolean().optional(),
    reason: z.string().optional(),
    events: count.optional(),
    watermark: bigintId.optional(),
    more: z.boolean().optional(),
    waiting_for_pids: z.array(count).optional(),
  })
  .transform((r, ctx): RunRollupsResult => {
    if (r.skipped) return { skipped: true, reason: r.reason ?? 'another run_rollups is in progress' };
    if (r.events === undefined || r.watermark === undefined || r.more === undefined) {
      ctx.addIssue({ code: 'custom', message: 'expected events, watermark and more' });
      return z.NEVER;
    }
    return {
      skipped: false,
      events: r.events,
      watermark: r.watermark,
      more: r.more,
      ...(r.waiting_for_pids ? { waitingForPids: r.waiting_for_pids } : {}),
    };
  });

/**
 * One run_rollups call. `skipped`: another run held the lock, nothing was done. Otherwise
 * `events` were folded and the watermark moved to `watermark`; `more` means call again;
 * `waitingForPids`: the run gave up waiting (setting rollups.max_wait) for these backends,
 * still inserting into its window, and folded nothing (call again later).
 */
export type RunRollupsResult =
  | { skipped: true; reason: string }
  | { skipped: false; events: number; watermark: string; more: boolean; waitingForPids?: number[] };

const runInput = z.strictObject({ maxEvents: z.union([z.number().int(), z.bigint()]).optional() });

// ---------------------------------------------------------------------------------------
// verify_rollups
// ---------------------------------------------------------------------------------------

/** The metrics whose values are decimals (money and quantity): decimal strings. Every other one is a count. */
const DECIMAL_METRICS = new Set(['cost_usd', 'potential_cost_usd', 'quantity']);
const HISTOGRAM_METRIC = 'latency_hist';

export const snakeToCamel = (name: string): string => name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
export const camelToSnake = (name: string): string => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** The metrics of one aggregate row (the metrics of tally._rollup_metrics()), camelCase. A metric a later schema adds is kept under its camelCase name. */
export interface UsageMetrics {
  requests: number;
  successful: number;
  failed: number;
  cached: number;
  files: number;
  bytes: number;
  tokensIn: number;
  tokensOut: number;
  /** Decimal string. */
  costUsd: string;
  /** Decimal string. */
  potentialCostUsd: string;
  /** Decimal string; null when no event of the bucket had a quantity. */
  quantity: string | null;
  latencyCount: number;
  latencySum: number;
  latencyMax: number | null;
  /** Events per tally.latency_buckets() bucket. */
  latencyHist: number[];
  /** LLM events (with tokens) whose cost is unknown because no price matched: not the same as free. */
  unpriced: number;
  [metric: string]: unknown;
}

const metricValue = (name: string) =>
  name === HISTOGRAM_METRIC ? z.array(count).nullable() : DECIMAL_METRICS.has(name) ? decimal.nullable() : count.nullable();

const usageMetrics = z.record(z.string(), z.unknown()).transform((raw, ctx): UsageMetrics => {
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(raw)) {
    const parsed = metricValue(name).safeParse(value);
    if (!parsed.success) {
      ctx.addIssue({ code: 'custom', path: [name], message: parsed.error.issues[0]?.message ?? 'bad metric' });
      return z.NEVER;
    }
    out[snakeToCamel(name)] = parsed.data;
  }
  return out as UsageMetrics;
});

const mismatchRow = z
  .object({
    grain: z.enum(['hourly', 'hourly_totals', 'daily', 'monthly', 'daily_by_dimension', 'monthly_by_dimension']),
    account_id: uuid,
    bucket: z.string(),
    dim_key: uuid.nullable(),
    dimension: z.string().nullable(),
    value: z.string().nullable(),
    expected: usageMetrics.nullable(),
    actual: usageMetrics.nullable(),
  })
  .transform((r) => ({
    grain: r.grain,
    accountId: r.account_id,
    bucket: r.bucket,
    dimKey: r.dim_key,
    dimension: r.dimension,
    value: r.value,
    expected: r.expected,
    actual: r.actual,
  }));

/**
 * One bucket and dimension tuple whose stored aggregate differs from its folded raw events.
 * `bucket`: the hour (UTC, `2026-05-01 13:00:00+00`) or the account-local day or month start
 * (`2026-05-01`). The hourly, daily and monthly grains name the dimension tuple by `dimKey`;
 * `hourly_totals` (an account's hour, whatever the tuple) has none; the grains by dimension
 * (`daily_by_dimension`, `monthly_by_dimension`) name the `dimension` and its `value` (null:
 * events without one) instead, and their `dimKey` is null.
 * `expected` (from the events) or `actual` (stored) is null when that side has no row.
 */
export type RollupMismatch = z.output<typeof mismatchRow>;

// Two decimal strings are the same value whatever their scale: 1.50 = 1.5.
const canonical = (v: unknown): unknown =>
  typeof v === 'string' && /^-?[0-9]+\.[0-9]+$/.test(v) ? v.replace(/0+$/, '').replace(/\.$/, '') : v;

/** The metrics (camelCase) on which a mismatch's two sides differ, with both values (null where a side has none). */
export function differingMetrics(m: Pick<RollupMismatch, 'expected' | 'actual'>): Record<string, { expected: unknown; actual: unknown }> {
  const names = new Set([...Object.keys(m.expected ?? {}), ...Object.keys(m.actual ?? {})]);
  const out: Record<string, { expected: unknown; actual: unknown }> = {};
  for (const name of names) {
    const e = m.expected?.[name] ?? null;
    const a = m.actual?.[name] ?? null;
    if (JSON.stringify(Array.isArray(e) ? e : canonical(e)) !== JSON.stringify(Array.isArray(a) ? a : canonical(a))) {
      out[name] = { expected: e, actual: a };
    }
  }
  return out;
}

const rangeInput = z.strictObject({ from: instantInput, to: instantInput });

// ---------------------------------------------------------------------------------------
// void_events, recompute_rollups
// ---------------------------------------------------------------------------------------

const voidResult = z
  .object({ voided: count, already_void: count, rebuilt_buckets: rebuiltBuckets })
  .transform((r) => ({ voided: r.voided, alreadyVoid: r.already_void, rebuiltBuckets: r.rebuilt_buckets }));
/** `voided`: newly voided; `alreadyVoid`: voided before (the first record is kept); the buckets rebuilt per grain. */
export type VoidEventsResult = z.output<typeof voidResult>;

const eventId = z.union([z.string().regex(/^[0-9]+$/, 'must be an event id (digits)'), z.number().int().nonnegative(), z.bigint().nonnegative()]);
const voidInput = z.strictObject({ eventIds: z.array(eventId), reason: z.string() });

const recomputeResult = z
  .object({ rebuilt_buckets: rebuiltBuckets, watermark: bigintId, from: timestamp, to: timestamp })
  .transform((r) => ({ rebuiltBuckets: r.rebuilt_buckets, watermark: r.watermark, from: r.from, to: r.to }));
/** The buckets rebuilt per grain, the watermark the rebuild read up to, and the range. */
export type RecomputeRollupsResult = z.output<typeof recomputeResult>;

// ---------------------------------------------------------------------------------------
// rollup_status
// ---------------------------------------------------------------------------------------

const nullableTime = timestamp.nullable();

const statusResult = z
  .object({
    watermark: bigintId,
    newest_event_id: bigintId,
    pending_events: count,
    oldest_pending_age_seconds: measure.nullable(),
    last_run_started_at: nullableTime.optional(),
    last_run_finished_at: nullableTime,
    last_run_duration_ms: measure.nullable().optional(),
    last_run_events: count.nullable(),
    last_run_waited_for_pids: z.array(count).nullable().optional(),
    runs: count.optional(),
    // schema 20 on
    unaggregated_hours: count.optional(),
    oldest_unaggregated_hour: nullableTime.optional(),
    last_run_ok: z.boolean().nullable().optional(),
    last_error: z.string().nullable().optional(),
    last_error_at: nullableTime.optional(),
    failures: count.optional(),
  })
  .transform((r) => ({
    watermark: r.watermark,
    newestEventId: r.newest_event_id,
    pendingEvents: r.pending_events,
    oldestPendingAgeSeconds: r.oldest_pending_age_seconds,
    lastRunStartedAt: r.last_run_started_at ?? null,
    lastRunFinishedAt: r.last_run_finished_at,
    lastRunDurationMs: r.last_run_duration_ms ?? null,
    lastRunEvents: r.last_run_events,
    lastRunWaitedForPids: r.last_run_waited_for_pids ?? null,
    runs: r.runs ?? 0,
    unaggregatedHours: r.unaggregated_hours,
    oldestUnaggregatedHour: r.oldest_unaggregated_hour,
    lastRunOk: r.last_run_ok,
    lastError: r.last_error,
    lastErrorAt: r.last_error_at,
    failures: r.failures,
  }));
/**
 * Where the rollups stand (tally.rollup_status). The last four and unaggregatedHours /
 * oldestUnaggregatedHour come with schema 20 and later (undefined before): the UTC hours in
 * which pending, not voided events have no hourly row yet, and the latest scheduled run's
 * outcome from tally.job_runs (lastRunOk null: never recorded).
 */
export type RollupStatusResult = z.output<typeof statusResult>;

const unpricedInput = z.strictObject({ windowDays: z.number().int().min(1).max(90).default(7) });
const unpricedRow = z
  .object({ provider: z.string().nullable(), model: z.string().nullable(), events: count, accounts: count, last_seen_hour: timestamp })
  .transform((r) => ({ provider: r.provider, model: r.model, events: r.events, accounts: r.accounts, lastSeenHour: r.last_seen_hour }));
/** One model that LLM events named without a matching price (their cost is unknown, not $0). */
export type UnpricedModel = z.output<typeof unpricedRow>;

const countRow = z.object({ n: count });
const foldedInput = z.strictObject({ from: instantInput, to: instantInput, upTo: z.union([bigintId, z.bigint().transform(String)]) });

// The folded, not voided events of a time range: a progress total for recomputes.
const FOLDED_EVENTS_SQL = `select count(*) as n from tally.events e
  where e.occurred_at >= $1::timestamptz and e.occurred_at < $2::timestamptz and e.id <= $3::bigint
    and not exists (select 1 from tally.event_voids v where v.account_id = e.account_id and v.event_id = e.id)`;

export function rollupsApi(q: Queryable) {
  return {
    /**
     * An upper bound of the events past the watermark, without scanning them: the ids drawn
     * since (some never become events: rolled back). For progress displays; exact counts
     * come from rollupStatus().pendingEvents.
     */
    async estimatePendingEvents(): Promise<number> {
      return callValue(q, 'pending_events_estimate', [], count);
    },

    /**
     * The folded (id at most `upTo`), not voided events that occurred in [from, to): what a
     * recompute of that range rebuilt from. One count over the range's raw events (for
     * progress displays, a chunk at a time).
     */
    async countFoldedEvents(input: z.input<typeof foldedInput>): Promise<number> {
      const p = parseInput('countFoldedEvents', foldedInput, input);
      const [row] = await selectRows(q, 'countFoldedEvents', FOLDED_EVENTS_SQL, [p.from, p.to, p.upTo], countRow);
      return row?.n ?? 0;
    },

    /**
     * Folds the events committed since the watermark into usage_hourly, usage_daily and
     * usage_monthly (at most maxEvents ids, default setting rollups.chunk_events), exactly
     * once. Call again while the result says `more`. Needs READ COMMITTED.
     */
    async runRollups(input: { maxEvents?: number | bigint } = {}): Promise<RunRollupsResult> {
      const p = parseInput('runRollups', runInput, input);
      return callValue(q, 'run_rollups', [['p_max_events', p.maxEvents?.toString(), 'bigint']], runResult, EXACT);
    },

    /**
     * Compares every hourly, daily and monthly bucket overlapping [from, to) (at most 400
     * days) with the folded raw events; no mismatches = consistent. `differingMetrics(m)` names
     * what differs.
     */
    async verifyRollups(input: z.input<typeof rangeInput>): Promise<RollupMismatch[]> {
      const p = parseInput('verifyRollups', rangeInput, input);
      return callRows(
        q,
        'verify_rollups',
        [
          ['p_from', p.from, 'timestamptz'],
          ['p_to', p.to, 'timestamptz'],
        ],
        mismatchRow,
        EXACT,
      );
    },

    /**
     * Takes events out of every aggregate, for a reason (1 to 1000 characters): they stay
     * in the ledger, marked void, and exactly the buckets they were counted in are rebuilt.
     * Event ids as decimal strings (or numbers, bigints). Unknown ids: NotFoundError (event_not_found).
     */
    async voidEvents(input: { eventIds: readonly (string | number | bigint)[]; reason: string }): Promise<VoidEventsResult> {
      const p = parseInput('voidEvents', voidInput, input);
      return callValue(
        q,
        'void_events',
        [
          ['p_event_ids', p.eventIds.map(String), 'bigint[]'],
          ['p_reason', p.reason, 'text'],
        ],
        voidResult,
        EXACT,
      );
    },

    /** Rebuilds every bucket overlapping [from, to) (at most 400 days) from the folded raw events: after a reprice or a fix. Idempotent. */
    async recomputeRollups(input: z.input<typeof rangeInput>): Promise<RecomputeRollupsResult> {
      const p = parseInput('recomputeRollups', rangeInput, input);
      return callValue(
        q,
        'recompute_rollups',
        [
          ['p_from', p.from, 'timestamptz'],
          ['p_to', p.to, 'timestamptz'],
        ],
        recomputeResult,
        EXACT,
      );
    },

    /** Where the rollups stand; its cost is one scan of the pending tail, so poll it sparingly during a large backlog. */
    async rollupStatus(): Promise<RollupStatusResult> {
      return callValue(q, 'rollup_status', [], statusResult, EXACT);
    },

    /**
     * The models of unpriced LLM events (tokens but no matching price) in the last
     * windowDays days (1 to 90, default 7), from the hourly aggregates plus the unfolded tail.
     */
    async unpricedModels(input: { windowDays?: number } = {}): Promise<UnpricedModel[]> {
      const p = parseInput('unpricedModels', unpricedInput, input);
      return callRows(q, 'unpriced_models', [['p_window', `${p.windowDays} days`, 'interval']], unpricedRow);
    },
  };
}
