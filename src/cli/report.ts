/**
 * `tally report --account ID`: one account's usage over a range, through the client's
 * analytics wrappers. A chart of the series (get_usage_series), the totals against the
 * same number of buckets just before (a second get_usage_series call), the provider,
 * model, endpoint and file-type breakdowns (get_breakdown) and the month's forecast
 * (get_period_summary); `--json` prints the same data as one object.
 */
import { plot } from 'asciichart';
import type { Command } from 'commander';
import { z } from 'zod';
import type { BreakdownDimension, BreakdownRow, Granularity, PeriodSummary, UsageSeriesBucket } from '../client/analytics.ts';
import type { Tally } from '../client/client.ts';
import { InvalidParameterError } from '../client/errors.ts';
import { timestamp, uuid } from '../client/schemas.ts';
import { selectRows } from '../client/sql.ts';
import { TallyError, UsageError } from '../errors.ts';
import { formatTable, withTally } from './client.ts';
import { bytes, fromUnits, int, percentOf, signed, sumDecimals, toUnits, usd } from './format.ts';
import { parseOptions } from './options.ts';

const DEFAULT_DAYS = 30;
const BREAKDOWN_LIMIT = 10;
const CHART_HEIGHT = 8;
const MIN_CHART_WIDTH = 40;

// ---------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------

const DATE = /^\d{4}-\d{2}-\d{2}$/;
const isDay = (v: string) => {
  const d = new Date(`${v}T00:00:00Z`);
  return !Number.isNaN(d.getTime()) && d.toISOString().slice(0, 10) === v;
};

/** A local calendar day (`{ day }`) or an instant (`{ at }`). */
type RangeEdge = { day: string; at?: undefined } | { at: Date; day?: undefined };

const rangeEdge = z.string().transform((v, ctx): RangeEdge => {
  if (DATE.test(v)) {
    if (isDay(v)) return { day: v };
    ctx.addIssue({ code: 'custom', message: `${v} is not a day of the calendar` });
    return z.NEVER;
  }
  const parsed = z.iso.datetime({ offset: true }).safeParse(v);
  if (parsed.success) return { at: new Date(parsed.data) };
  ctx.addIssue({ code: 'custom', message: "must be a date YYYY-MM-DD (the account's local day) or an ISO 8601 time with an offset" });
  return z.NEVER;
});

const reportOptions = z
  .strictObject({
    account: uuid,
    from: rangeEdge.optional(),
    to: rangeEdge.optional(),
    days: z
      .string()
      .regex(/^\d+$/, 'must be a whole number of days')
      .transform(Number)
      .pipe(z.number().min(1, 'must be at least 1').max(3660, 'must be at most 3660'))
      .optional(),
    granularity: z.enum(['hour', 'day', 'week', 'month']).default('day'),
    json: z.boolean().optional(),
  })
  .superRefine((o, ctx) => {
    if (o.days !== undefined && (o.from || o.to)) {
      ctx.addIssue({ code: 'custom', path: ['days'], message: 'takes no --from or --to: give either a number of days or a range' });
    } else if (o.to && !o.from) {
      ctx.addIssue({ code: 'custom', path: ['to'], message: 'needs --from' });
    } else if (o.from?.day && o.to?.day && o.from.day > o.to.day) {
      ctx.addIssue({ code: 'custom', path: ['from'], message: 'must not be after --to (both days are included)' });
    } else if (o.from?.at && o.to?.at && o.from.at >= o.to.at) {
      ctx.addIssue({ code: 'custom', path: ['from'], message: 'must be earlier than --to' });
    }
  });
type ReportOptions = z.output<typeof reportOptions>;

// ---------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------

/** The additive metrics of a range: the sums of its buckets (latency does not add up, so it is per bucket and per endpoint). */
export interface RangeTotals {
  from: Date;
  to: Date;
  buckets: number;
  requests: number;
  successful: number;
  failed: number;
  cached: number;
  /** 100 × cached / requests, 2 decimals ('0.00' without requests). */
  cacheHitPct: string;
  files: number;
  bytes: number;
  tokensIn: number;
  tokensOut: number;
  tokensTotal: number;
  costUsd: string;
  potentialCostUsd: string;
  savingsUsd: string;
  quantity: string;
  unpriced: number;
}

const COUNT_TOTALS = ['requests', 'successful', 'failed', 'cached', 'files', 'bytes', 'tokensIn', 'tokensOut', 'tokensTotal', 'unpriced'] as const;
const DECIMAL_TOTALS = ['costUsd', 'potentialCostUsd', 'savingsUsd', 'quantity'] as const;
type TotalMetric = (typeof COUNT_TOTALS)[number] | (typeof DECIMAL_TOTALS)[number] | 'cacheHitPct';

/**
 * Current − previous per metric (a number for counts, decimal text otherwise); changePct
 * null when previous is 0. cacheHitPct changes by percentage points (its changePct is null).
 */
export type TotalsChange = Record<TotalMetric, { change: number | string; changePct: string | null }>;

export interface Report {
  account: { id: string; name: string; timezone: string };
  range: { from: Date; to: Date; fromDate: string; toDate: string; granularity: Granularity; buckets: number };
  series: UsageSeriesBucket[];
  totals: {
    current: RangeTotals;
    /** The same number of buckets just before the first one; null when it cannot be read (see previousUnavailable). */
    previous: RangeTotals | null;
    change: TotalsChange | null;
    previousUnavailable: { code: string; message: string } | null;
  };
  /** get_breakdown over the local days fromDate..toDate, by requests, the first 10 values and 'other'. */
  breakdowns: { provider: BreakdownRow[]; model: BreakdownRow[]; endpoint: BreakdownRow[]; fileType: BreakdownRow[] };
  /** get_period_summary of the month of toDate (the current month at the latest). */
  month: PeriodSummary;
}

function totalsOf(buckets: readonly UsageSeriesBucket[], from: Date, to: Date): RangeTotals {
  const out: Record<string, unknown> = { from, to, buckets: buckets.length };
  for (const m of COUNT_TOTALS) out[m] = buckets.reduce((acc, b) => acc + b[m], 0);
  for (const m of DECIMAL_TOTALS) out[m] = sumDecimals(buckets.map((b) => b[m]));
  out.cacheHitPct = percentOf(BigInt(out.cached as number), BigInt(out.requests as number)) ?? '0.00';
  return out as unknown as RangeTotals;
}

function changeOf(current: RangeTotals, previous: RangeTotals): TotalsChange {
  const out: Record<string, { change: number | string; changePct: string | null }> = {};
  for (const m of COUNT_TOTALS) {
    out[m] = { change: current[m] - previous[m], changePct: percentOf(BigInt(current[m] - previous[m]), BigInt(previous[m])) };
  }
  for (const m of DECIMAL_TOTALS) {
    const delta = toUnits(current[m]) - toUnits(previous[m]);
    out[m] = { change: fromUnits(delta), changePct: percentOf(delta, toUnits(previous[m])) };
  }
  // a rate changes by percentage points
  out.cacheHitPct = { change: fromUnits(toUnits(current.cacheHitPct, 2) - toUnits(previous.cacheHitPct, 2), 2), changePct: null };
  return out as TotalsChange;
}

const rangeRow = z.object({
  name: z.string(),
  timezone: z.string(),
  today: z.string(),
  from_at: timestamp,
  to_at: timestamp,
  from_date: z.string(),
  to_date: z.string(),
});

// The account, and the range's instants and local days in its time zone. A day given is
// its local midnight (--to: the midnight after it, the day is included); --days N is the N
// local days ending today, up to now.
const RANGE_SQL = `
  with a as (
    select a.name, a.timezone, (now() at time zone a.timezone)::date as today
      from tally.accounts a where a.id = $1::uuid
  ), r as (
    select a.*,
           coalesce($3::timestamptz, (coalesce($2::date, a.today - ($6::integer - 1)))::timestamp at time zone a.timezone) as from_at,
           coalesce($5::timestamptz, ($4::date + 1)::timestamp at time zone a.timezone, now()) as to_at
      from a
  )
  select r.name, r.timezone, r.today::text as today, r.from_at, r.to_at,
         (r.from_at at time zone r.timezone)::date::text as from_date,
         ((r.to_at - interval '1 microsecond') at time zone r.timezone)::date::text as to_date
    from r`;

// The start of the `n` buckets before `start`: local calendar arithmetic (UTC for hours).
const PREVIOUS_START_SQL = `select ((($1::timestamptz at time zone $2::text) - $3::interval) at time zone $2::text) as start`;

const BREAKDOWNS: readonly [keyof Report['breakdowns'], BreakdownDimension][] = [
  ['provider', 'provider'],
  ['model', 'model'],
  ['endpoint', 'endpoint'],
  ['fileType', 'file_type'],
];

export async function buildReport(tally: Tally, o: ReportOptions): Promise<Report> {
  const days = o.days ?? (o.from ? null : DEFAULT_DAYS);
  const [range] = await selectRows(
    tally.pool,
    'report',
    RANGE_SQL,
    [o.account, o.from?.day ?? null, o.from?.at ?? null, o.to?.day ?? null, o.to?.at ?? null, days],
    rangeRow,
  );
  if (!range) throw new TallyError('account_not_found', `no account ${o.account} (see \`tally accounts list\`)`);
  if (range.from_at >= range.to_at) {
    throw new UsageError(o.to ? '--from: must be earlier than --to' : `--from: must be in the past (the account's today is ${range.today})`);
  }
  const granularity = o.granularity;
  const series = await tally.usageSeries({ accountId: o.account, from: range.from_at, to: range.to_at, granularity });
  const first = series[0];
  const last = series.at(-1);
  if (!first || !last) throw new TallyError('invalid_response', 'get_usage_series returned no bucket');
  const current = totalsOf(series, first.bucketStart, last.bucketEnd);

  let previous: RangeTotals | null = null;
  let previousUnavailable: Report['totals']['previousUnavailable'] = null;
  const [start] = await selectRows(
    tally.pool,
    'report',
    PREVIOUS_START_SQL,
    [first.bucketStart, granularity === 'hour' ? 'UTC' : range.timezone, `${series.length} ${granularity}s`],
    z.object({ start: timestamp }),
  );
  try {
    const before = await tally.usageSeries({ accountId: o.account, from: start!.start, to: first.bucketStart, granularity });
    previous = totalsOf(before, before[0]?.bucketStart ?? start!.start, first.bucketStart);
  } catch (err) {
    // older than the aggregates kept (past_retention), or longer than the granularity allows
    if (!(err instanceof InvalidParameterError)) throw err;
    previousUnavailable = { code: err.code, message: err.message };
  }

  const breakdowns = {} as Report['breakdowns'];
  for (const [key, dimension] of BREAKDOWNS) {
    breakdowns[key] = await tally.breakdown({ accountId: o.account, dimension, from: range.from_date, to: range.to_date, limit: BREAKDOWN_LIMIT });
  }
  const month = await tally.periodSummary({ accountId: o.account, month: range.to_date < range.today ? range.to_date : range.today });

  return {
    account: { id: o.account, name: range.name, timezone: range.timezone },
    range: { from: range.from_at, to: range.to_at, fromDate: range.from_date, toDate: range.to_date, granularity, buckets: series.length },
    series,
    totals: { current, previous, change: previous ? changeOf(current, previous) : null, previousUnavailable },
    breakdowns,
    month,
  };
}

// ---------------------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------------------

const bucketLabel = (b: UsageSeriesBucket, g: Granularity): string =>
  g === 'hour' ? b.bucketStart.toISOString().slice(0, 13).replace('T', ' ') + ':00Z' : g === 'month' ? b.localDate.slice(0, 7) : b.localDate;

/**
 * A line chart of one value per bucket, at most `width` columns wide (consecutive buckets
 * summed when there are more, each bucket over a few columns when there are few), with the
 * first and last bucket under it.
 */
export function formatChart(title: string, values: readonly number[], labels: readonly string[], width: number, format: (v: number) => string): string {
  const per = Math.max(1, Math.ceil(values.length / Math.max(width, 1)));
  const summed: number[] = [];
  for (let i = 0; i < values.length; i += per) summed.push(values.slice(i, i + per).reduce((a, b) => a + b, 0));
  // a short series is drawn wider (each bucket over a few columns), so its shape can be read
  const repeat = Math.max(1, Math.floor(Math.min(width, MIN_CHART_WIDTH) / summed.length));
  const columns = summed.flatMap((v) => Array<number>(repeat).fill(v));
  const max = Math.max(0, ...columns);
  if (max === 0) return `${title}\n  nothing in the range`;
  const labelWidth = Math.max(format(max).length, format(0).length);
  const chart = plot(columns, { height: CHART_HEIGHT, min: 0, format: (v) => format(v).padStart(labelWidth) });
  const axis = chart.split('\n')[0]!.search(/[┤┼]/) + 1;
  const firstLabel = labels[0] ?? '';
  const lastLabel = labels.at(-1) ?? '';
  const span = Math.max(columns.length, firstLabel.length + lastLabel.length + 2);
  const under = ' '.repeat(axis) + (labels.length > 1 ? firstLabel + lastLabel.padStart(span - firstLabel.length) : firstLabel);
  const heading = per > 1 ? `${title} (each column: ${per} buckets)` : title;
  return [heading, chart, under].join('\n');
}

const pct = (v: string | null): string => (v === null ? '-' : `${v}%`);
const changeText = (c: { change: number | string; changePct: string | null }, show: (v: number | string) => string): string => {
  const delta = signed(show(c.change));
  return c.changePct === null ? delta : `${delta} (${signed(c.changePct)}%)`;
};

function formatTotals(r: Report): string {
  const { current, previous, change } = r.totals;
  const money = (v: number | string) => usd(String(v));
  const rows: [string, TotalMetric, (v: number | string) => string][] = [
    ['requests', 'requests', (v) => int(Number(v))],
    ['successful', 'successful', (v) => int(Number(v))],
    ['failed', 'failed', (v) => int(Number(v))],
    ['cached', 'cached', (v) => int(Number(v))],
    ['cache hit rate', 'cacheHitPct', (v) => `${v}%`],
    ['tokens in', 'tokensIn', (v) => int(Number(v))],
    ['tokens out', 'tokensOut', (v) => int(Number(v))],
    ['files', 'files', (v) => int(Number(v))],
    ['bytes', 'bytes', (v) => bytes(Number(v))],
    ['cost', 'costUsd', money],
    ['potential cost', 'potentialCostUsd', money],
    ['saved by cache', 'savingsUsd', money],
    ['unpriced LLM calls', 'unpriced', (v) => int(Number(v))],
  ];
  const table = formatTable(
    ['METRIC', 'THIS PERIOD', 'PREVIOUS', 'CHANGE'],
    rows.map(([label, key, show]) => [
      label,
      show(current[key]),
      previous ? show(previous[key]) : '-',
      change ? (key === 'cacheHitPct' ? `${signed(String(change[key].change))} pts` : changeText(change[key], show)) : '-',
    ]),
    [1, 2, 3],
  );
  const previousLine = previous
    ? `previous: the ${previous.buckets} ${r.range.granularity}(s) before, ${bucketSpan(previous.from, previous.to, r)}`
    : `previous: not available (${r.totals.previousUnavailable?.code ?? 'unknown'}: ${r.totals.previousUnavailable?.message ?? ''})`;
  return `Totals (${r.range.buckets} ${r.range.granularity}(s))\n${table}\n${previousLine}`;
}

function bucketSpan(from: Date, to: Date, r: Report): string {
  const local = (d: Date) => d.toLocaleString('sv-SE', { timeZone: r.account.timezone }).slice(0, 16);
  return `${local(from)} to ${local(to)} ${r.account.timezone}`;
}

const BREAKDOWN_TITLES: Record<keyof Report['breakdowns'], string> = {
  provider: 'Providers',
  model: 'Models',
  endpoint: 'Endpoints',
  fileType: 'File types',
};

function formatBreakdown(key: keyof Report['breakdowns'], rows: readonly BreakdownRow[]): string {
  const title = `${BREAKDOWN_TITLES[key]} (share of requests)`;
  if (rows.length === 0) return `${title}\n  no events in the range`;
  const name = (row: BreakdownRow) => row.label;
  const [header, cells, right]: [string[], (row: BreakdownRow) => string[], number[]] =
    key === 'endpoint'
      ? [
          ['ENDPOINT', 'REQUESTS', 'SHARE', 'FAILED', 'AVG MS', 'P95 MS'],
          (row) => [name(row), int(row.requests), pct(row.sharePct), int(row.failed), row.avgLatencyMs ?? '-', row.p95LatencyMs ?? '-'],
          [1, 2, 3, 4, 5],
        ]
      : key === 'fileType'
        ? [['FILE TYPE', 'REQUESTS', 'SHARE', 'FILES', 'BYTES'], (row) => [name(row), int(row.requests), pct(row.sharePct), int(row.files), bytes(row.bytes)], [1, 2, 3, 4]]
        : [
            [key === 'provider' ? 'PROVIDER' : 'MODEL', 'REQUESTS', 'SHARE', 'TOKENS', 'COST'],
            (row) => [name(row), int(row.requests), pct(row.sharePct), int(row.tokensTotal), usd(row.costUsd)],
            [1, 2, 3, 4],
          ];
  return `${title}\n${formatTable(header, rows.map(cells), right)}`;
}

function formatMonth(m: PeriodSummary): string {
  const finished = m.forecastMethod === 'actual';
  const lines = [
    `Month ${m.month.slice(0, 7)} (${finished ? 'finished' : `${m.elapsedPct}% elapsed`})`,
    formatTable(
      ['', 'REQUESTS', 'COST'],
      finished
        ? [['total', int(m.requests), usd(m.costUsd)]]
        : [
            ['so far', int(m.requests), usd(m.costUsd)],
            ['forecast', int(m.forecastRequests), usd(m.forecastCostUsd)],
          ],
      [1, 2],
    ),
    finished ? 'a finished month: no forecast' : 'forecast: the month-to-date run rate carried to the end of the month',
  ];
  return lines.join('\n');
}

export function formatReport(r: Report, width = 100): string {
  const { range, account } = r;
  const labels = r.series.map((b) => bucketLabel(b, range.granularity));
  const chartWidth = Math.max(20, width - 16);
  const sections = [
    `${account.name} · ${account.id} · ${account.timezone}\n` +
      `${range.fromDate} to ${range.toDate} (local days) · ${range.buckets} ${range.granularity}(s)`,
    formatChart(`Requests per ${range.granularity}`, r.series.map((b) => b.requests), labels, chartWidth, (v) => int(Math.round(v))),
  ];
  if (r.series.some((b) => toUnits(b.costUsd) > 0n)) {
    sections.push(formatChart(`Cost per ${range.granularity}`, r.series.map((b) => Number(b.costUsd)), labels, chartWidth, (v) => `$${v.toFixed(2)}`));
  }
  sections.push(formatTotals(r));
  for (const [key] of BREAKDOWNS) sections.push(formatBreakdown(key, r.breakdowns[key]));
  sections.push(formatMonth(r.month));
  return sections.join('\n\n');
}

// ---------------------------------------------------------------------------------------
// The command
// ---------------------------------------------------------------------------------------

export function registerReport(program: Command): void {
  program
    .command('report')
    .description("print an account's usage: a chart, the totals against the previous period, breakdowns, the month's forecast")
    .requiredOption('--account <id>', 'the account id (see `tally accounts list`)')
    .option('--from <date>', "start: a date YYYY-MM-DD (the account's local day) or an ISO 8601 time with an offset")
    .option('--to <date>', 'end: a date (included) or an ISO 8601 time (excluded); default now')
    .option('--days <n>', `the last N local days, today included (default ${DEFAULT_DAYS}; not with --from/--to)`)
    .option('--granularity <unit>', 'hour (UTC, at most 31 days), day (default), week (ISO, from Monday) or month')
    .option('--json', 'print the whole report as one JSON object')
    .addHelpText(
      'after',
      '\nWhat it shows (the analytics functions of the SQL API, as the database user of the URL):\n' +
        '  - a chart of the requests per bucket, and of the cost when there is any (get_usage_series);\n' +
        "    days, weeks and months are the account's local ones, and every bucket the range touches is whole;\n" +
        '  - the totals of those buckets against the same number of buckets just before the first one,\n' +
        '    read with a second get_usage_series call (not compare_periods, which compares calendar periods\n' +
        '    to date); latency does not add up across buckets: it is per bucket in --json and per endpoint;\n' +
        '  - the providers, models, endpoints and file types by share of requests over the local days of the\n' +
        "    range, the first 10 and 'other' (get_breakdown; '(none)' counts the events without one);\n" +
        '  - the month of the last day (the current month at the latest): totals so far and the month-end\n' +
        '    forecast at the month-to-date run rate (get_period_summary).\n' +
        'Exact at any moment: the rollups plus the events not folded yet.\n\n' +
        'Examples:\n' +
        '  tally report --account $ACCOUNT\n' +
        '  tally report --account $ACCOUNT --from 2026-11-01 --to 2026-11-30 --granularity week\n' +
        '  tally report --account $ACCOUNT --days 2 --granularity hour --json\n\n' +
        'Exit codes: 0 done, 1 failed (account_not_found, past_retention, invalid_parameter for a range longer\n' +
        'than the granularity allows), 2 bad usage.',
    )
    .action(async (raw) => {
      const options = parseOptions(reportOptions, raw);
      const report = await withTally((tally) => buildReport(tally, options));
      process.stdout.write(options.json ? JSON.stringify(report, null, 2) + '\n' : formatReport(report, process.stdout.columns ?? 100) + '\n');
    });
}
