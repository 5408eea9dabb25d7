/**
 * The dashboard reads: tally.get_usage_series, get_breakdown, get_top_endpoints,
 * compare_periods, get_period_summary, get_usage_history and get_dashboard_stats.
 * Members of the account (any role) and service callers; anyone else gets ForbiddenError
 * (42501), the same for an account that does not exist.
 *
 * Every function answers with the same metric columns ("M" in the SQL API), here camelCase
 * in AnalyticsMetrics: counts (requests, files, bytes, tokens, ...) are numbers, money,
 * percentages, averages and latency percentiles are decimal strings exactly as the database
 * rounded them. Calendar days ('YYYY-MM-DD') are strings, instants are Dates.
 *
 * The filters (apiKeyIds, eventTypes, providers, models, endpoints, fileTypes) take one
 * value or a list; several filters are ANDed, a list matches any of its values, and an
 * event without the dimension never matches a filter on it.
 */
import { z } from 'zod';
import { callRow, callRows, parseInput, type Arg, type Queryable } from './sql.ts';
import { count, decimal, instantInput, timestamp, uuid } from './schemas.ts';
import { snakeToCamel } from './rollups.ts';

// ---------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------

/** A calendar day from the database (sql.ts reads date columns as their text). */
const DAY_SHAPE = /^\d{4}-\d{2}-\d{2}$/;
const day = z.string().regex(DAY_SHAPE, 'must be a date YYYY-MM-DD');

/** A calendar day given by the caller: 'YYYY-MM-DD', a day that exists. */
const dayInput = z
  .string()
  .regex(DAY_SHAPE, "must be a date 'YYYY-MM-DD'")
  .refine((v) => {
    if (!DAY_SHAPE.test(v)) return true; // the shape's own message is enough
    const d = new Date(`${v}T00:00:00Z`);
    return !Number.isNaN(d.getTime()) && d.toISOString().slice(0, 10) === v;
  }, 'must be a day that exists');

const optionalDecimal = decimal.nullable();

/** A whole number (limits, months, days); the database checks its range and names the argument. */
const wholeNumber = z.number().int('must be a whole number');

// ---------------------------------------------------------------------------------------
// The metric columns every function returns
// ---------------------------------------------------------------------------------------

/**
 * The metric columns of every analytics function, camelCase. Counts are numbers; money,
 * percentages (0 to 100, 2 decimals), averages and percentiles (milliseconds, 2 decimals)
 * are decimal strings. The latency figures are null when no event had a latency.
 */
export interface AnalyticsMetrics {
  requests: number;
  successful: number;
  failed: number;
  cached: number;
  /** 100 × cached / requests, '0' or '0.00' when there were no requests. */
  cacheHitPct: string;
  files: number;
  bytes: number;
  tokensIn: number;
  tokensOut: number;
  tokensTotal: number;
  costUsd: string;
  potentialCostUsd: string;
  /** potentialCostUsd − costUsd: what cached calls saved. */
  savingsUsd: string;
  quantity: string;
  /** LLM events whose cost is unknown because no price matched (not the same as free). */
  unpriced: number;
  avgLatencyMs: string | null;
  /** Histogram estimates (nearest rank, within 17.2 %). */
  p50LatencyMs: string | null;
  p95LatencyMs: string | null;
  p99LatencyMs: string | null;
}

/** The metric names, in the SQL functions' column order (compare_periods reports them in this order too). */
export const ANALYTICS_METRICS = [
  'requests', 'successful', 'failed', 'cached', 'cacheHitPct', 'files', 'bytes', 'tokensIn', 'tokensOut', 'tokensTotal',
  'costUsd', 'potentialCostUsd', 'savingsUsd', 'quantity', 'unpriced', 'avgLatencyMs', 'p50LatencyMs', 'p95LatencyMs', 'p99LatencyMs',
] as const satisfies readonly (keyof AnalyticsMetrics)[];
export type AnalyticsMetric = (typeof ANALYTICS_METRICS)[number];

const metricColumns = {
  requests: count,
  successful: count,
  failed: count,
  cached: count,
  cache_hit_pct: decimal,
  files: count,
  bytes: count,
  tokens_in: count,
  tokens_out: count,
  tokens_total: count,
  cost_usd: decimal,
  potential_cost_usd: decimal,
  savings_usd: decimal,
  quantity: decimal,
  unpriced: count,
  avg_latency_ms: optionalDecimal,
  p50_latency_ms: optionalDecimal,
  p95_latency_ms: optionalDecimal,
  p99_latency_ms: optionalDecimal,
};
type MetricColumns = z.output<z.ZodObject<typeof metricColumns>>;

function metricsOf(r: MetricColumns): AnalyticsMetrics {
  return {
    requests: r.requests,
    successful: r.successful,
    failed: r.failed,
    cached: r.cached,
    cacheHitPct: r.cache_hit_pct,
    files: r.files,
    bytes: r.bytes,
    tokensIn: r.tokens_in,
    tokensOut: r.tokens_out,
    tokensTotal: r.tokens_total,
    costUsd: r.cost_usd,
    potentialCostUsd: r.potential_cost_usd,
    savingsUsd: r.savings_usd,
    quantity: r.quantity,
    unpriced: r.unpriced,
    avgLatencyMs: r.avg_latency_ms,
    p50LatencyMs: r.p50_latency_ms,
    p95LatencyMs: r.p95_latency_ms,
    p99LatencyMs: r.p99_latency_ms,
  };
}

// ---------------------------------------------------------------------------------------
// Filters
// ---------------------------------------------------------------------------------------

/** One value or a list of them (1 to 1000); undefined or null = no filter. */
export type FilterValue = string | readonly string[];

/** The filters of get_usage_series, get_breakdown, get_top_endpoints and compare_periods. */
export interface AnalyticsFilters {
  apiKeyIds?: FilterValue | null;
  eventTypes?: FilterValue | null;
  providers?: FilterValue | null;
  models?: FilterValue | null;
  endpoints?: FilterValue | null;
  fileTypes?: FilterValue | null;
}

const oneOrMany = (item: z.ZodType<string>) =>
  z
    .union([item, z.array(item).min(1, 'an empty list matches nothing: leave the filter out for no filter').max(1000, 'takes at most 1000 values')])
    .nullish()
    .transform((v) => (v === null || v === undefined ? undefined : Array.isArray(v) ? v : [v as string]));

const filterShape = {
  apiKeyIds: oneOrMany(uuid),
  eventTypes: oneOrMany(z.string()),
  providers: oneOrMany(z.string()),
  models: oneOrMany(z.string()),
  endpoints: oneOrMany(z.string()),
  fileTypes: oneOrMany(z.string()),
};

function filterArgs(p: { [K in keyof typeof filterShape]: string[] | undefined }): Arg[] {
  return [
    ['p_api_key_ids', p.apiKeyIds, 'uuid[]'],
    ['p_event_types', p.eventTypes, 'text[]'],
    ['p_providers', p.providers, 'text[]'],
    ['p_models', p.models, 'text[]'],
    ['p_endpoints', p.endpoints, 'text[]'],
    ['p_file_types', p.fileTypes, 'text[]'],
  ];
}

// ---------------------------------------------------------------------------------------
// get_usage_series
// ---------------------------------------------------------------------------------------

export type Granularity = 'hour' | 'day' | 'week' | 'month';

export interface UsageSeriesInput extends AnalyticsFilters {
  accountId: string;
  /** Every bucket overlapping [from, to) is returned whole. A Date or ISO 8601 with an offset. */
  from: Date | string;
  to: Date | string;
  /** hour (UTC hours, at most 31 days), day (local days, default), week (ISO weeks from Monday, local), month (local). */
  granularity?: Granularity;
}

const seriesInput = z.strictObject({
  accountId: uuid,
  from: instantInput,
  to: instantInput,
  granularity: z.enum(['hour', 'day', 'week', 'month']).optional(),
  ...filterShape,
});

const seriesRow = z
  .object({ bucket_start: timestamp, bucket_end: timestamp, local_date: day, ...metricColumns })
  .transform((r) => ({ bucketStart: r.bucket_start, bucketEnd: r.bucket_end, localDate: r.local_date, ...metricsOf(r) }));
/** One bucket of the series: [bucketStart, bucketEnd), its local date (account time zone) at bucketStart, its metrics. */
export type UsageSeriesBucket = z.output<typeof seriesRow>;

// ---------------------------------------------------------------------------------------
// get_breakdown
// ---------------------------------------------------------------------------------------

export type BreakdownDimension = 'provider' | 'model' | 'endpoint' | 'file_type' | 'api_key' | 'event_type' | 'status_class';
export type BreakdownMeasure = 'requests' | 'cost' | 'bytes' | 'tokens';

export interface BreakdownInput extends AnalyticsFilters {
  accountId: string;
  /** status_class (1xx..5xx) takes no filter. */
  dimension: BreakdownDimension;
  /** Local calendar days 'YYYY-MM-DD', both included. */
  from: string;
  to: string;
  /** Rows listed before the rest fold into one 'other' row (1 to 1000, default 10). */
  limit?: number;
  /** What rows are ranked and shared by (default requests; cost = costUsd, tokens = tokensTotal). */
  measure?: BreakdownMeasure;
}

const breakdownInput = z.strictObject({
  accountId: uuid,
  dimension: z.enum(['provider', 'model', 'endpoint', 'file_type', 'api_key', 'event_type', 'status_class']),
  from: dayInput,
  to: dayInput,
  limit: wholeNumber.optional(),
  measure: z.enum(['requests', 'cost', 'bytes', 'tokens']).optional(),
  ...filterShape,
});

const breakdownRow = z
  .object({ rank: count, value: z.string().nullable(), label: z.string(), is_other: z.boolean(), share_pct: decimal, ...metricColumns })
  .transform((r) => ({ rank: r.rank, value: r.value, label: r.label, isOther: r.is_other, sharePct: r.share_pct, ...metricsOf(r) }));
/**
 * One value of the dimension. `value` null with `isOther` false: the events without it
 * (label '(none)'); `isOther` true: every value past the limit (label 'other'). `label`:
 * the key's name for api_key, else the value. `sharePct`: of the measure; the rows add up
 * to exactly 100.00 (all 0.00 when the total is 0).
 */
export type BreakdownRow = z.output<typeof breakdownRow>;

// ---------------------------------------------------------------------------------------
// get_top_endpoints
// ---------------------------------------------------------------------------------------

export interface TopEndpointsInput extends AnalyticsFilters {
  accountId: string;
  /** Local calendar days 'YYYY-MM-DD', both included; the previous period is as many days just before. */
  from: string;
  to: string;
  /** 1 to 1000, default 10. */
  limit?: number;
  orderBy?: 'requests' | 'cost';
}

const topEndpointsInput = z.strictObject({
  accountId: uuid,
  from: dayInput,
  to: dayInput,
  limit: wholeNumber.optional(),
  orderBy: z.enum(['requests', 'cost']).optional(),
  ...filterShape,
});

const topEndpointRow = z
  .object({
    rank: count,
    endpoint: z.string(),
    requests: count,
    successful: count,
    failed: count,
    error_pct: decimal,
    cost_usd: decimal,
    avg_latency_ms: optionalDecimal,
    p95_latency_ms: optionalDecimal,
    previous_rank: count.nullable(),
    rank_change: count.nullable(),
    previous_requests: count.nullable(),
    previous_cost_usd: optionalDecimal,
    requests_change_pct: optionalDecimal,
  })
  .transform((r) => ({
    rank: r.rank,
    endpoint: r.endpoint,
    requests: r.requests,
    successful: r.successful,
    failed: r.failed,
    errorPct: r.error_pct,
    costUsd: r.cost_usd,
    avgLatencyMs: r.avg_latency_ms,
    p95LatencyMs: r.p95_latency_ms,
    previousRank: r.previous_rank,
    rankChange: r.rank_change,
    previousRequests: r.previous_requests,
    previousCostUsd: r.previous_cost_usd,
    requestsChangePct: r.requests_change_pct,
  }));
/**
 * One endpoint of the period. `rankChange` = previousRank − rank (positive: moved up),
 * null when the endpoint is new; `requestsChangePct` null when it had no previous requests.
 */
export type TopEndpoint = z.output<typeof topEndpointRow>;

// ---------------------------------------------------------------------------------------
// compare_periods
// ---------------------------------------------------------------------------------------

export interface ComparePeriodsInput extends AnalyticsFilters {
  accountId: string;
  /** Local calendar period (default month). */
  period?: 'day' | 'week' | 'month';
  /** The end of the current span (default now): [start of its period, at) against the same elapsed span of the previous period. */
  at?: Date | string;
}

const compareInput = z.strictObject({
  accountId: uuid,
  period: z.enum(['day', 'week', 'month']).optional(),
  at: instantInput.optional(),
  ...filterShape,
});

const comparisonRow = z
  .object({
    metric: z.string(),
    current_value: optionalDecimal,
    previous_value: optionalDecimal,
    change: optionalDecimal,
    change_pct: optionalDecimal,
    current_from: timestamp,
    current_to: timestamp,
    previous_from: timestamp,
    previous_to: timestamp,
  })
  .transform((r) => ({
    metric: snakeToCamel(r.metric) as AnalyticsMetric,
    currentValue: r.current_value,
    previousValue: r.previous_value,
    change: r.change,
    changePct: r.change_pct,
    currentFrom: r.current_from,
    currentTo: r.current_to,
    previousFrom: r.previous_from,
    previousTo: r.previous_to,
  }));
/**
 * One metric of the two periods (its name as in AnalyticsMetrics, `costUsd`), every value a
 * decimal string: `change` = current − previous, `changePct` null when previous is 0 or null.
 */
export type PeriodComparison = z.output<typeof comparisonRow>;

// ---------------------------------------------------------------------------------------
// get_period_summary
// ---------------------------------------------------------------------------------------

const summaryInput = z.strictObject({ accountId: uuid, month: dayInput.nullish() });

const summaryRow = z
  .object({
    month: day,
    period_start: timestamp,
    period_end: timestamp,
    as_of: timestamp,
    elapsed_pct: decimal,
    ...metricColumns,
    savings_pct: decimal,
    forecast_requests: count,
    forecast_cost_usd: decimal,
    forecast_method: z.string(),
  })
  .transform((r) => ({
    month: r.month,
    periodStart: r.period_start,
    periodEnd: r.period_end,
    asOf: r.as_of,
    elapsedPct: r.elapsed_pct,
    ...metricsOf(r),
    savingsPct: r.savings_pct,
    forecastRequests: r.forecast_requests,
    forecastCostUsd: r.forecast_cost_usd,
    forecastMethod: r.forecast_method as 'month_to_date_run_rate' | 'actual',
  }));
/**
 * One local month: its totals so far, and the month-end forecast at the month-to-date run
 * rate (`forecastMethod` 'month_to_date_run_rate'; 'actual' for a finished month, whose
 * forecast is its total).
 */
export type PeriodSummary = z.output<typeof summaryRow>;

// ---------------------------------------------------------------------------------------
// get_usage_history, get_dashboard_stats
// ---------------------------------------------------------------------------------------

const historyInput = z.strictObject({ accountId: uuid, months: wholeNumber.optional() });
const historyRow = z.object({ month: day, ...metricColumns }).transform((r) => ({ month: r.month, ...metricsOf(r) }));
/** One local month (its first day) and its metrics. */
export type UsageHistoryMonth = z.output<typeof historyRow>;

const dashboardInput = z.strictObject({ accountId: uuid, days: wholeNumber.optional() });
const requestsByValue = z.record(z.string(), count);
const dashboardRow = z
  .object({ day, ...metricColumns, requests_by_provider: requestsByValue, requests_by_model: requestsByValue })
  .transform((r) => ({ day: r.day, ...metricsOf(r), requestsByProvider: r.requests_by_provider, requestsByModel: r.requests_by_model }));
/** One local day: its metrics, and its requests per provider and per model ({} when none; keys as recorded). */
export type DashboardDay = z.output<typeof dashboardRow>;

// ---------------------------------------------------------------------------------------
// The wrappers
// ---------------------------------------------------------------------------------------

export function analyticsApi(q: Queryable) {
  return {
    /** get_usage_series: the gap-filled buckets overlapping [from, to), oldest first. */
    async usageSeries(input: UsageSeriesInput): Promise<UsageSeriesBucket[]> {
      const p = parseInput('usageSeries', seriesInput, input);
      return callRows(
        q,
        'get_usage_series',
        [
          ['p_account_id', p.accountId, 'uuid'],
          ['p_from', p.from, 'timestamptz'],
          ['p_to', p.to, 'timestamptz'],
          ['p_granularity', p.granularity, 'text'],
          ...filterArgs(p),
        ],
        seriesRow,
      );
    },

    /** get_breakdown: the values of one dimension over local days [from, to], largest first, the rest as one 'other' row. */
    async breakdown(input: BreakdownInput): Promise<BreakdownRow[]> {
      const p = parseInput('breakdown', breakdownInput, input);
      return callRows(
        q,
        'get_breakdown',
        [
          ['p_account_id', p.accountId, 'uuid'],
          ['p_dimension', p.dimension, 'text'],
          ['p_from', p.from, 'date'],
          ['p_to', p.to, 'date'],
          ...filterArgs(p),
          ['p_limit', p.limit, 'integer'],
          ['p_measure', p.measure, 'text'],
        ],
        breakdownRow,
      );
    },

    /** get_top_endpoints: the busiest (or costliest) endpoints over local days [from, to], with their rank in the period before. */
    async topEndpoints(input: TopEndpointsInput): Promise<TopEndpoint[]> {
      const p = parseInput('topEndpoints', topEndpointsInput, input);
      return callRows(
        q,
        'get_top_endpoints',
        [
          ['p_account_id', p.accountId, 'uuid'],
          ['p_from', p.from, 'date'],
          ['p_to', p.to, 'date'],
          ['p_limit', p.limit, 'integer'],
          ['p_order_by', p.orderBy, 'text'],
          ...filterArgs(p),
        ],
        topEndpointRow,
      );
    },

    /** compare_periods: this period so far against the same elapsed span of the previous one, one row per metric. */
    async comparePeriods(input: ComparePeriodsInput): Promise<PeriodComparison[]> {
      const p = parseInput('comparePeriods', compareInput, input);
      return callRows(
        q,
        'compare_periods',
        [
          ['p_account_id', p.accountId, 'uuid'],
          ['p_period', p.period, 'text'],
          ['p_at', p.at, 'timestamptz'],
          ...filterArgs(p),
        ],
        comparisonRow,
      );
    },

    /** get_period_summary: a local month's totals and forecast; `month` is any of its days 'YYYY-MM-DD' (default the current month). */
    async periodSummary(input: { accountId: string; month?: string | null }): Promise<PeriodSummary> {
      const p = parseInput('periodSummary', summaryInput, input);
      return callRow(
        q,
        'get_period_summary',
        [
          ['p_account_id', p.accountId, 'uuid'],
          ['p_month', p.month ?? undefined, 'date'],
        ],
        summaryRow,
      );
    },

    /** get_usage_history: the last `months` local months (1 to 120, default 12) including this one, oldest first. */
    async usageHistory(input: { accountId: string; months?: number }): Promise<UsageHistoryMonth[]> {
      const p = parseInput('usageHistory', historyInput, input);
      return callRows(
        q,
        'get_usage_history',
        [
          ['p_account_id', p.accountId, 'uuid'],
          ['p_months', p.months, 'integer'],
        ],
        historyRow,
      );
    },

    /** get_dashboard_stats: the last `days` local days (1 to 3660, default 30) including today, oldest first. */
    async dashboardStats(input: { accountId: string; days?: number }): Promise<DashboardDay[]> {
      const p = parseInput('dashboardStats', dashboardInput, input);
      return callRows(
        q,
        'get_dashboard_stats',
        [
          ['p_account_id', p.accountId, 'uuid'],
          ['p_days', p.days, 'integer'],
        ],
        dashboardRow,
        { exactJson: true },
      );
    },
  };
}
