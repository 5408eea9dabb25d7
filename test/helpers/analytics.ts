/**
 * The dashboard functions of migration 36 called the way the TS client calls them (named
 * arguments, explicit casts), with the rows in a shape a test can compare: counts (bigint)
 * as numbers, numerics as canonical decimal strings (no trailing zeros: '0.25', '100'),
 * dates as 'YYYY-MM-DD', instants as ISO strings. `raw: true` keeps numerics as PostgreSQL
 * prints them ('0.250000000000', '33.34'), for the tests of their scale.
 */
import pg from 'pg';
import type { Queryable } from './ledger.ts';

export interface Filters {
  apiKeyIds?: string[] | null;
  eventTypes?: string[] | null;
  providers?: string[] | null;
  models?: string[] | null;
  endpoints?: string[] | null;
  fileTypes?: string[] | null;
}

const FILTER_ARGS: [keyof Filters, string, string][] = [
  ['apiKeyIds', 'p_api_key_ids', 'uuid[]'],
  ['eventTypes', 'p_event_types', 'text[]'],
  ['providers', 'p_providers', 'text[]'],
  ['models', 'p_models', 'text[]'],
  ['endpoints', 'p_endpoints', 'text[]'],
  ['fileTypes', 'p_file_types', 'text[]'],
];

/** The metric columns every function returns ("M" of the contract), in order. */
export const METRIC_COLUMNS = [
  'requests', 'successful', 'failed', 'cached', 'cache_hit_pct', 'files', 'bytes', 'tokens_in', 'tokens_out', 'tokens_total',
  'cost_usd', 'potential_cost_usd', 'savings_usd', 'quantity', 'unpriced', 'avg_latency_ms', 'p50_latency_ms', 'p95_latency_ms',
  'p99_latency_ms',
] as const;
export type MetricName = (typeof METRIC_COLUMNS)[number];
export type Metrics = Record<MetricName, number | string | null>;

/** An empty bucket's metrics: counts and sums 0, cache_hit_pct 0, averages and percentiles NULL. */
export const EMPTY: Metrics = {
  requests: 0, successful: 0, failed: 0, cached: 0, cache_hit_pct: '0', files: '0', bytes: '0', tokens_in: '0', tokens_out: '0',
  tokens_total: '0', cost_usd: '0', potential_cost_usd: '0', savings_usd: '0', quantity: '0', unpriced: 0, avg_latency_ms: null,
  p50_latency_ms: null, p95_latency_ms: null, p99_latency_ms: null,
};

/** Metrics written by hand: what is not given is the empty bucket's value. */
export const M = (given: Partial<Metrics>): Metrics => ({ ...EMPTY, ...given });

/** The metric columns of a row. */
export const metricsOf = (row: Row): Metrics => Object.fromEntries(METRIC_COLUMNS.map((c) => [c, row[c] as Metrics[MetricName]])) as Metrics;

/** A decimal string without trailing zeros ('0.250000000000' -> '0.25', '100.00' -> '100'). */
export function canonical(value: string): string {
  if (!value.includes('.')) return value;
  return value.replace(/0+$/, '').replace(/\.$/, '');
}

export type Row = Record<string, unknown>;

const defaultTimestamptz = pg.types.getTypeParser(pg.types.builtins.TIMESTAMPTZ) as (v: string) => Date;
function typesFor(raw: boolean) {
  return {
    getTypeParser: ((oid: number, format?: string) => {
      switch (oid) {
        case pg.types.builtins.INT8:
          return (v: string) => Number(v);
        case pg.types.builtins.NUMERIC:
          return raw ? (v: string) => v : canonical;
        case pg.types.builtins.DATE:
          return (v: string) => v;
        case pg.types.builtins.TIMESTAMPTZ:
          return (v: string) => defaultTimestamptz(v).toISOString();
        default:
          return pg.types.getTypeParser(oid, format as 'text');
      }
    }) as typeof pg.types.getTypeParser,
  };
}

type Arg = [name: string, value: unknown, type: string];

/** select * from tally.<fn>(named args): only the arguments given (the others keep their defaults). */
export async function callFunction(q: Queryable, fn: string, args: Arg[], options: { raw?: boolean } = {}): Promise<Row[]> {
  const given = args.filter(([, value]) => value !== undefined);
  const text = `select * from tally.${fn}(${given.map(([name, , type], i) => `${name} => $${i + 1}::${type}`).join(', ')})`;
  const result = await (q as pg.Pool).query({ text, values: given.map(([, value]) => value), types: typesFor(options.raw ?? false) });
  return result.rows as Row[];
}

const filterArgs = (filters: Filters = {}): Arg[] => FILTER_ARGS.map(([key, name, type]) => [name, filters[key], type]);

export interface Options {
  raw?: boolean;
}

export const usageSeries = (q: Queryable, account: string, from: string, to: string, granularity?: string, filters?: Filters, options?: Options) =>
  callFunction(q, 'get_usage_series', [
    ['p_account_id', account, 'uuid'], ['p_from', from, 'timestamptz'], ['p_to', to, 'timestamptz'],
    ['p_granularity', granularity, 'text'], ...filterArgs(filters),
  ], options);

export const breakdown = (
  q: Queryable, account: string, dimension: string, from: string, to: string,
  more: { filters?: Filters; limit?: number; measure?: string } = {}, options?: Options,
) =>
  callFunction(q, 'get_breakdown', [
    ['p_account_id', account, 'uuid'], ['p_dimension', dimension, 'text'], ['p_from', from, 'date'], ['p_to', to, 'date'],
    ...filterArgs(more.filters), ['p_limit', more.limit, 'integer'], ['p_measure', more.measure, 'text'],
  ], options);

export const topEndpoints = (
  q: Queryable, account: string, from: string, to: string,
  more: { filters?: Filters; limit?: number; orderBy?: string } = {}, options?: Options,
) =>
  callFunction(q, 'get_top_endpoints', [
    ['p_account_id', account, 'uuid'], ['p_from', from, 'date'], ['p_to', to, 'date'], ['p_limit', more.limit, 'integer'],
    ['p_order_by', more.orderBy, 'text'], ...filterArgs(more.filters),
  ], options);

export const comparePeriods = (q: Queryable, account: string, period?: string, at?: string, filters?: Filters, options?: Options) =>
  callFunction(q, 'compare_periods', [
    ['p_account_id', account, 'uuid'], ['p_period', period, 'text'], ['p_at', at, 'timestamptz'], ...filterArgs(filters),
  ], options);

export const periodSummary = (q: Queryable, account: string, month?: string | null, options?: Options) =>
  callFunction(q, 'get_period_summary', [['p_account_id', account, 'uuid'], ['p_month', month, 'date']], options);

export const usageHistory = (q: Queryable, account: string, months?: number, options?: Options) =>
  callFunction(q, 'get_usage_history', [['p_account_id', account, 'uuid'], ['p_months', months, 'integer']], options);

export const dashboardStats = (q: Queryable, account: string, days?: number, options?: Options) =>
  callFunction(q, 'get_dashboard_stats', [['p_account_id', account, 'uuid'], ['p_days', days, 'integer']], options);

/** compare_periods' rows as { metric: [current, previous, change, change_pct] }. */
export function comparison(rows: Row[]): Record<string, [unknown, unknown, unknown, unknown]> {
  return Object.fromEntries(rows.map((r) => [r.metric as string, [r.current_value, r.previous_value, r.change, r.change_pct]]));
}

/** run_rollups until nothing is left. */
export async function drain(q: Queryable): Promise<void> {
  while ((await q.query('select tally.run_rollups() as r')).rows[0].r.more);
}
