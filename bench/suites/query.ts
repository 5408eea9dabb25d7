/**
 * The analytics read functions (issue 10) on realistic data, in one run on one scratch
 * database: the shared generator (bench/usage-data.ts) loads N events (BENCH_QUERY_EVENTS,
 * default 10,000,000) over 90 days for 1,000 accounts in time order, run_rollups folds all
 * but the newest BENCH_QUERY_TAIL (default 10,000; reads add that unfolded tail, as they
 * would between two worker runs), then, for the largest account, each of the seven functions
 * is called BENCH_QUERY_REPS times (default 50, after 5 warm-up calls) as service_role and as
 * a signed-in member (`authenticated` through RLS, claims and role set per transaction as
 * PostgREST does), alternating call by call; beside each, the same question answered by one
 * plain SQL over tally.events (BENCH_QUERY_RAW_REPS times, default 5, after a warm-up).
 * The same is done first on BENCH_QUERY_SMALL_EVENTS (default 1,000,000) events, the ledger
 * emptied in between, for the large/small latency ratio.
 *
 * Windows (the account's time zone, America/New_York): the last 30 days (series by day, and
 * by hour over 7 days, and by day filtered on one API key and one provider), the last 30 local
 * days (breakdown by model, top endpoints against the 30 days before, dashboard stats), the
 * month of 15 days ago against the month before it (compare_periods at now() - 15 days, the
 * period summary of that month), and 12 months of history.
 */
import pg from 'pg';
import { runMigrations } from '../../src/database/migrate.ts';
import type { BenchResult, BenchSuite } from '../lib.ts';
import { aggregateTables, median, resetLedger, rowCounts } from '../lib.ts';
import { createTenants, loadEvents, type Tenants } from '../usage-data.ts';

const EVENTS = Number(process.env.BENCH_QUERY_EVENTS ?? 10_000_000);
const SMALL = Number(process.env.BENCH_QUERY_SMALL_EVENTS ?? 1_000_000);
const REPS = Number(process.env.BENCH_QUERY_REPS ?? 50);
const RAW_REPS = Number(process.env.BENCH_QUERY_RAW_REPS ?? 5);
const TAIL = Number(process.env.BENCH_QUERY_TAIL ?? 10_000);
const WARMUP = 5;
const DAYS = 90;

const FUNCTIONS = [
  'get_usage_series', 'get_breakdown', 'get_top_endpoints', 'compare_periods', 'get_period_summary', 'get_usage_history', 'get_dashboard_stats',
] as const;

/** 10000000 → '10m', 250000 → '250k'. */
const label = (n: number) => (n % 1e6 === 0 ? `${n / 1e6}m` : n % 1e3 === 0 ? `${n / 1e3}k` : String(n));

/** The metric columns "M" of the spec, over events `e` of a group, from raw events (percentiles exact). */
const M = `count(*) as requests, count(*) filter (where e.success) as successful, count(*) filter (where not e.success) as failed,
  count(*) filter (where e.cached) as cached, round(100.0 * count(*) filter (where e.cached) / count(*), 2) as cache_hit_pct,
  coalesce(sum(e.files), 0) as files, coalesce(sum(e.bytes), 0) as bytes, coalesce(sum(e.tokens_in), 0) as tokens_in,
  coalesce(sum(e.tokens_out), 0) as tokens_out, coalesce(sum(e.tokens_in), 0) + coalesce(sum(e.tokens_out), 0) as tokens_total,
  coalesce(sum(e.cost_usd), 0) as cost_usd, coalesce(sum(e.potential_cost_usd), 0) as potential_cost_usd,
  coalesce(sum(e.potential_cost_usd), 0) - coalesce(sum(e.cost_usd), 0) as savings_usd, sum(e.quantity) as quantity,
  count(*) filter (where (e.tokens_in is not null or e.tokens_out is not null) and (e.cost_usd is null or e.potential_cost_usd is null)) as unpriced,
  round(avg(e.latency_ms), 2) as avg_latency_ms,
  percentile_disc(array[0.5, 0.95, 0.99]) within group (order by e.latency_ms) as latency_pcts`;
/** The event columns M reads, for a CTE of the window's events. */
const M_COLUMNS = 'e.success, e.cached, e.files, e.bytes, e.tokens_in, e.tokens_out, e.cost_usd, e.potential_cost_usd, e.quantity, e.latency_ms';
const NOT_VOIDED = 'not exists (select 1 from tally.event_voids v where v.account_id = e.account_id and v.event_id = e.id)';
/**
 * The account's events in [$3, $4), not voided. $2 (the account's time zone) is named here so
 * that its type is known in the queries that do not cut local days; it folds to true.
 */
const WINDOW = `e.account_id = $1::uuid and e.occurred_at >= $3::timestamptz and e.occurred_at < $4::timestamptz and $2::text is not null and ${NOT_VOIDED}`;

type Row = Record<string, unknown>;
const sumOf = (rows: Row[], column = 'requests') => rows.reduce((s, r) => s + Number(r[column] ?? 0), 0);

interface QueryCase {
  name: string;
  what: string;
  call: string;
  params: unknown[];
  raw: string;
  rawParams: unknown[];
  /** Requests counted by the function's answer and by the raw one: they must agree. */
  total(rows: Row[]): number;
  rawTotal(rows: Row[]): number;
}

/** The windows of the cases, cut in the account's time zone by the database. */
interface Bounds {
  now: string;
  series_from: string; series_raw_from: string; series_raw_to: string;
  hour_from: string; hour_raw_from: string; hour_raw_to: string;
  day_from: string; day_to: string; days_raw_from: string; days_raw_to: string; previous_raw_from: string;
  p_at: string; current_from: string; previous_from: string; previous_to: string;
  month: string; month_raw_from: string; month_raw_to: string;
  history_raw_from: string; history_raw_to: string;
}

const BOUNDS_SQL = `
  with n as (select now() as now, $1::text as tz),
  l as (select n.*, (n.now at time zone n.tz)::date as today, n.now - interval '15 days' as p_at from n),
  m as (select l.*, date_trunc('month', l.p_at at time zone l.tz) as cur_local, date_trunc('month', l.today::timestamp) as this_month from l)
  select now::text,
         (now - interval '30 days')::text as series_from,
         (((now - interval '30 days') at time zone tz)::date::timestamp at time zone tz)::text as series_raw_from,
         (((now at time zone tz)::date + 1)::timestamp at time zone tz)::text as series_raw_to,
         (now - interval '7 days')::text as hour_from,
         date_trunc('hour', now - interval '7 days', 'UTC')::text as hour_raw_from,
         (date_trunc('hour', now, 'UTC') + interval '1 hour')::text as hour_raw_to,
         (today - 29)::text as day_from, today::text as day_to,
         ((today - 29)::timestamp at time zone tz)::text as days_raw_from,
         ((today + 1)::timestamp at time zone tz)::text as days_raw_to,
         ((today - 59)::timestamp at time zone tz)::text as previous_raw_from,
         p_at::text,
         (cur_local at time zone tz)::text as current_from,
         ((cur_local - interval '1 month') at time zone tz)::text as previous_from,
         least(((cur_local - interval '1 month') at time zone tz) + (p_at - (cur_local at time zone tz)), cur_local at time zone tz)::text as previous_to,
         cur_local::date::text as month,
         (cur_local at time zone tz)::text as month_raw_from,
         ((cur_local + interval '1 month') at time zone tz)::text as month_raw_to,
         ((this_month - interval '11 months') at time zone tz)::text as history_raw_from,
         ((this_month + interval '1 month') at time zone tz)::text as history_raw_to
  from m`;

function cases(account: string, tz: string, b: Bounds, keyId: string, provider: string): QueryCase[] {
  const seriesRaw = (extra = '') => `
    with agg as (
      select (e.occurred_at at time zone $2)::date as day, ${M}
      from tally.events e where ${WINDOW}${extra}
      group by 1)
    select d::date as day, agg.* from generate_series(($3::timestamptz at time zone $2)::date, ($4::timestamptz at time zone $2)::date - 1, interval '1 day') d
    left join agg on agg.day = d::date order by 1`;
  return [
    {
      name: 'get_usage_series', what: 'by day over the last 30 days',
      call: `select * from tally.get_usage_series(p_account_id => $1::uuid, p_from => $2::timestamptz, p_to => $3::timestamptz, p_granularity => 'day')`,
      params: [account, b.series_from, b.now],
      raw: seriesRaw(), rawParams: [account, tz, b.series_raw_from, b.series_raw_to],
      total: (r) => sumOf(r), rawTotal: (r) => sumOf(r),
    },
    {
      name: 'get_breakdown', what: 'by model, top 10 by requests + other, over the last 30 local days',
      call: `select * from tally.get_breakdown(p_account_id => $1::uuid, p_dimension => 'model', p_from => $2::date, p_to => $3::date, p_limit => 10, p_measure => 'requests')`,
      params: [account, b.day_from, b.day_to],
      // the window's events once, ranked by requests, then M per rank (ranks past 10 as one "other" row)
      raw: `
        with w as materialized (select e.model as value, ${M_COLUMNS} from tally.events e where ${WINDOW}),
        ranked as (select value, row_number() over (order by count(*) desc, value nulls last) as rn from w group by value),
        g as (
          select case when r.rn <= 10 then r.rn else 11 end as rank, case when r.rn <= 10 then r.value end as value, ${M}
          from w e join ranked r on coalesce(r.value, chr(1)) = coalesce(e.value, chr(1))
          group by 1, 2)
        select round(100.0 * g.requests / sum(g.requests) over (), 2) as share_pct, g.* from g order by rank`,
      rawParams: [account, tz, b.days_raw_from, b.days_raw_to],
      total: (r) => sumOf(r), rawTotal: (r) => sumOf(r),
    },
    {
      name: 'get_top_endpoints', what: 'top 10 by requests over the last 30 local days, ranked against the 30 days before',
      call: `select * from tally.get_top_endpoints(p_account_id => $1::uuid, p_from => $2::date, p_to => $3::date, p_limit => 10, p_order_by => 'requests')`,
      params: [account, b.day_from, b.day_to],
      raw: `
        with cur as (
          select e.endpoint, count(*) as requests, count(*) filter (where e.success) as successful, count(*) filter (where not e.success) as failed,
                 coalesce(sum(e.cost_usd), 0) as cost_usd, round(avg(e.latency_ms), 2) as avg_latency_ms,
                 percentile_disc(0.95) within group (order by e.latency_ms) as p95_latency_ms
          from tally.events e where ${WINDOW} and e.endpoint is not null group by 1),
        prev as (
          select e.endpoint, count(*) as requests, coalesce(sum(e.cost_usd), 0) as cost_usd
          from tally.events e
          where e.account_id = $1::uuid and e.occurred_at >= $5::timestamptz and e.occurred_at < $3::timestamptz and e.endpoint is not null and ${NOT_VOIDED}
          group by 1),
        cr as (select cur.*, row_number() over (order by requests desc, endpoint) as rank from cur),
        pr as (select prev.*, row_number() over (order by requests desc, endpoint) as rank from prev)
        select cr.rank, cr.endpoint, cr.requests, cr.successful, cr.failed, round(100.0 * cr.failed / cr.requests, 2) as error_pct,
               cr.cost_usd, cr.avg_latency_ms, cr.p95_latency_ms, pr.rank as previous_rank, pr.rank - cr.rank as rank_change,
               pr.requests as previous_requests, pr.cost_usd as previous_cost_usd,
               round(100.0 * (cr.requests - pr.requests) / nullif(pr.requests, 0), 2) as requests_change_pct
        from cr left join pr using (endpoint) where cr.rank <= 10 order by cr.rank`,
      rawParams: [account, tz, b.days_raw_from, b.days_raw_to, b.previous_raw_from],
      total: (r) => sumOf(r), rawTotal: (r) => sumOf(r),
    },
    {
      name: 'compare_periods', what: 'month to date at now() - 15 days against the same span of the month before',
      call: `select * from tally.compare_periods(p_account_id => $1::uuid, p_period => 'month', p_at => $2::timestamptz)`,
      params: [account, b.p_at],
      raw: `
        select case when e.occurred_at >= $5::timestamptz then 'current' else 'previous' end as period, ${M}
        from tally.events e
        where e.account_id = $1::uuid and $2::text is not null and ${NOT_VOIDED}
          and ((e.occurred_at >= $3::timestamptz and e.occurred_at < $4::timestamptz) or (e.occurred_at >= $5::timestamptz and e.occurred_at < $6::timestamptz))
        group by 1 order by 1`,
      rawParams: [account, tz, b.previous_from, b.previous_to, b.current_from, b.p_at],
      total: (r) => r.filter((x) => x.metric === 'requests').reduce((s, x) => s + Number(x.current_value ?? 0) + Number(x.previous_value ?? 0), 0),
      rawTotal: (r) => sumOf(r),
    },
    {
      name: 'get_period_summary', what: 'the local month of now() - 15 days, with the forecast',
      call: `select * from tally.get_period_summary(p_account_id => $1::uuid, p_month => $2::date)`,
      params: [account, b.month],
      raw: `select ${M} from tally.events e where ${WINDOW}`,
      rawParams: [account, tz, b.month_raw_from, b.month_raw_to],
      total: (r) => sumOf(r), rawTotal: (r) => sumOf(r),
    },
    {
      name: 'get_usage_history', what: 'the last 12 local months (the raw scan reads all 90 days of events)',
      call: `select * from tally.get_usage_history(p_account_id => $1::uuid, p_months => 12)`,
      params: [account],
      raw: `
        with agg as (
          select date_trunc('month', e.occurred_at at time zone $2)::date as month, ${M}
          from tally.events e where ${WINDOW} group by 1)
        select m::date as month, agg.* from generate_series(($3::timestamptz at time zone $2)::date, ($4::timestamptz at time zone $2)::date - 1, interval '1 month') m
        left join agg on agg.month = m::date order by 1`,
      rawParams: [account, tz, b.history_raw_from, b.history_raw_to],
      total: (r) => sumOf(r), rawTotal: (r) => sumOf(r),
    },
    {
      name: 'get_dashboard_stats', what: 'the last 30 local days, with requests by provider and by model per day',
      call: `select * from tally.get_dashboard_stats(p_account_id => $1::uuid, p_days => 30)`,
      params: [account],
      raw: `
        with w as materialized (
          select (e.occurred_at at time zone $2)::date as day, e.provider, e.model, ${M_COLUMNS} from tally.events e where ${WINDOW}),
        d as (select e.day, ${M} from w e group by 1),
        p as (select day, jsonb_object_agg(provider, n) as m from (select day, provider, count(*) as n from w where provider is not null group by 1, 2) x group by 1),
        mo as (select day, jsonb_object_agg(model, n) as m from (select day, model, count(*) as n from w where model is not null group by 1, 2) x group by 1)
        select g::date as day, d.*, coalesce(p.m, '{}') as requests_by_provider, coalesce(mo.m, '{}') as requests_by_model
        from generate_series(($3::timestamptz at time zone $2)::date, ($4::timestamptz at time zone $2)::date - 1, interval '1 day') g
        left join d on d.day = g::date left join p on p.day = g::date left join mo on mo.day = g::date order by 1`,
      rawParams: [account, tz, b.days_raw_from, b.days_raw_to],
      total: (r) => sumOf(r), rawTotal: (r) => sumOf(r),
    },
    // extras, no target
    {
      name: 'get_usage_series_hour_7d', what: 'by UTC hour over the last 7 days',
      call: `select * from tally.get_usage_series(p_account_id => $1::uuid, p_from => $2::timestamptz, p_to => $3::timestamptz, p_granularity => 'hour')`,
      params: [account, b.hour_from, b.now],
      raw: `
        with agg as (
          select date_trunc('hour', e.occurred_at, 'UTC') as hour, ${M}
          from tally.events e where ${WINDOW} group by 1)
        select h as hour, agg.* from generate_series($3::timestamptz, $4::timestamptz - interval '1 hour', interval '1 hour') h
        left join agg on agg.hour = h order by 1`,
      rawParams: [account, tz, b.hour_raw_from, b.hour_raw_to],
      total: (r) => sumOf(r), rawTotal: (r) => sumOf(r),
    },
    {
      name: 'get_usage_series_two_filters', what: `by day over the last 30 days, filtered on one API key and provider ${provider} (two dimensions)`,
      call: `select * from tally.get_usage_series(p_account_id => $1::uuid, p_from => $2::timestamptz, p_to => $3::timestamptz, p_granularity => 'day',
                                                  p_api_key_ids => $4::uuid[], p_providers => $5::text[])`,
      params: [account, b.series_from, b.now, [keyId], [provider]],
      raw: seriesRaw(' and e.api_key_id = any ($5::uuid[]) and e.provider = any ($6::text[])'),
      rawParams: [account, tz, b.series_raw_from, b.series_raw_to, [keyId], [provider]],
      total: (r) => sumOf(r), rawTotal: (r) => sumOf(r),
    },
  ];
}

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] ?? Number.NaN;
};
const ms2 = (v: number) => Math.round(v * 100) / 100;

type Persona = { role: 'service_role' } | { role: 'authenticated'; userId: string };

/** One call in its own transaction as PostgREST makes it: claims, then SET LOCAL ROLE; only the call is timed. */
async function callAs(client: pg.PoolClient, persona: Persona, sql: string, params: unknown[]): Promise<{ ms: number; rows: Row[] }> {
  const claims = persona.role === 'authenticated' ? { sub: persona.userId, role: persona.role } : { role: persona.role };
  await client.query('begin');
  try {
    await client.query("select set_config('request.jwt.claims', $1, true)", [JSON.stringify(claims)]);
    await client.query(`set local role ${persona.role}`);
    const start = performance.now();
    const { rows } = await client.query<Row>(sql, params);
    const ms = performance.now() - start;
    await client.query('commit');
    return { ms, rows };
  } catch (err) {
    await client.query('rollback').catch(() => undefined);
    throw err;
  }
}

interface Measured {
  service: number[];
  member: number[];
  raw: number[];
  total: number;
  rawTotal: number;
  memberTotal: number;
}

async function measure(client: pg.PoolClient, c: QueryCase, member: Persona): Promise<Measured> {
  const service: Persona = { role: 'service_role' };
  const m: Measured = { service: [], member: [], raw: [], total: 0, rawTotal: 0, memberTotal: 0 };
  for (let i = 0; i < WARMUP; i++) {
    m.total = c.total((await callAs(client, service, c.call, c.params)).rows);
    m.memberTotal = c.total((await callAs(client, member, c.call, c.params)).rows);
  }
  // alternate the personas call by call, and which goes first, so drift hits both alike
  for (let i = 0; i < REPS; i++) {
    const order = i % 2 === 0 ? [service, member] : [member, service];
    for (const p of order) (p.role === 'service_role' ? m.service : m.member).push((await callAs(client, p, c.call, c.params)).ms);
  }
  for (let i = 0; i <= RAW_REPS; i++) {
    const start = performance.now();
    const { rows } = await client.query<Row>(c.raw, c.rawParams);
    if (i > 0) m.raw.push(performance.now() - start);
    m.rawTotal = c.rawTotal(rows);
  }
  return m;
}

/** run_rollups until only the newest `tail` events are left unfolded. */
async function foldAllBut(pool: pg.Pool, tail: number): Promise<void> {
  const { rows } = await pool.query('select max(id)::float8 as high, tally.rollup_watermark()::float8 as watermark from tally.events');
  const stop = Number(rows[0].high) - tail;
  let watermark = Number(rows[0].watermark);
  while (watermark < stop) {
    const r = (await pool.query('select tally.run_rollups(p_max_events => $1::bigint) as r', [Math.min(500_000, stop - watermark)])).rows[0].r;
    if (r.skipped || r.waiting_for_pids) throw new Error(`run_rollups did not fold: ${JSON.stringify(r)}`);
    watermark = Number(r.watermark);
  }
}

interface SizeRun {
  events: number;
  measured: Map<string, Measured>;
  cases: QueryCase[];
}

async function runSize(pool: pg.Pool, tenants: Tenants, member: Persona, events: number, results: BenchResult[], log: (line: string) => void): Promise<SizeRun> {
  const tag = label(events);
  await resetLedger(pool);
  const load = await loadEvents(pool, tenants, { events, days: DAYS, order: 'time', log });
  results.push({ name: `load_${tag}`, value: Math.round(events / (load.ms / 1000)), unit: 'events/s', note: `COPY of ${events} generated events (time order, 90 days, 1,000 accounts) into tally.events` });
  await pool.query('analyze tally.events');
  const start = performance.now();
  await foldAllBut(pool, TAIL);
  const rollupMs = performance.now() - start;
  const tables = await aggregateTables(pool);
  const rowsOf = await rowCounts(pool, tables);
  const folded = events - TAIL;
  const rollupNote = `run_rollups over ${folded} events (the newest ${TAIL} left as the unfolded tail) in ${(rollupMs / 1000).toFixed(0)} s; ` +
    `${(folded / (rowsOf.usage_hourly ?? 1)).toFixed(2)} events per hourly row; rows: ${tables.map((t) => `${t} ${rowsOf[t]}`).join(', ')}`;
  log(rollupNote);
  results.push({ name: `rollup_${tag}`, value: Math.round(folded / (rollupMs / 1000)), unit: 'events/s', note: rollupNote });
  // a settled table, as autovacuum leaves it: hint bits set, visibility map, statistics
  await pool.query('vacuum analyze tally.events');
  for (const t of tables) await pool.query(`vacuum analyze tally.${pg.escapeIdentifier(t)}`);

  const account = tenants.largest;
  const { rows: [b] } = await pool.query<Bounds>(BOUNDS_SQL, [account.timezone]);
  const { rows: [top] } = await pool.query<{ key: string; provider: string; n: number }>(
    `select (select api_key_id::text from tally.events where account_id = $1 and api_key_id is not null group by 1 order by count(*) desc limit 1) as key,
            (select provider from tally.events where account_id = $1 and provider is not null group by 1 order by count(*) desc limit 1) as provider,
            (select count(*)::float8 from tally.events where account_id = $1) as n`,
    [account.id],
  );
  log(`largest account: ${top!.n} of ${events} events, time zone ${account.timezone}`);
  const list = cases(account.id, account.timezone, b!, top!.key, top!.provider);
  const measured = new Map<string, Measured>();
  const client = await pool.connect();
  try {
    for (const c of list) {
      const m = await measure(client, c, member);
      measured.set(c.name, m);
      log(`${tag} ${c.name}: service median ${ms2(median(m.service))} ms (p95 ${ms2(percentile(m.service, 0.95))}), member ${ms2(median(m.member))} ms, raw scan ${ms2(median(m.raw))} ms; requests ${m.total} / member ${m.memberTotal} / raw ${m.rawTotal}`);
    }
  } finally {
    client.release();
  }
  return { events, measured, cases: list };
}

export const suite: BenchSuite = {
  name: 'query',
  description: `the seven analytics read functions for the largest of 1,000 accounts, at ${EVENTS.toLocaleString('en-US')} and ${SMALL.toLocaleString('en-US')} generated events, vs a raw scan, member vs service`,
  async run(ctx) {
    const results: BenchResult[] = [];
    const db = await ctx.createDatabase();
    const pool = new pg.Pool({ connectionString: db.url, max: 4 });
    try {
      await runMigrations(db.url);
      const missing = (await pool.query<{ f: string }>(
        `select f from unnest($1::text[]) f where not exists (select 1 from pg_catalog.pg_proc p where p.pronamespace = 'tally'::regnamespace and p.proname = f)`,
        [FUNCTIONS],
      )).rows.map((r) => r.f);
      if (missing.length > 0) throw new Error(`the read functions are not installed: ${missing.join(', ')}`);
      ctx.log('creating 1,000 accounts with their keys (create_account checks the time zone against pg_timezone_names: ~25 ms each)');
      const started = performance.now();
      const tenants = await createTenants(pool);
      ctx.log(`accounts and keys created in ${((performance.now() - started) / 1000).toFixed(1)} s`);
      const userId = (await pool.query<{ id: string }>("insert into auth.users (id, email) values (gen_random_uuid(), 'bench-member@example.test') returning id::text")).rows[0]!.id;
      await pool.query("select tally.set_account_member(p_account_id => $1::uuid, p_user_id => $2::uuid, p_role => 'member')", [tenants.largest.id, userId]);
      const member: Persona = { role: 'authenticated', userId };

      const small = await runSize(pool, tenants, member, SMALL, results, ctx.log);
      const large = await runSize(pool, tenants, member, EVENTS, results, ctx.log);
      const [tl, ts] = [label(EVENTS), label(SMALL)];
      for (const c of large.cases) {
        const m = large.measured.get(c.name)!;
        const s = small.measured.get(c.name)!;
        const extra = !(FUNCTIONS as readonly string[]).includes(c.name);
        const med = ms2(median(m.service));
        const agree = m.total === m.rawTotal && m.total === m.memberTotal;
        const answer = `requests: function ${m.total}, member ${m.memberTotal}, raw scan ${m.rawTotal}${agree ? '' : ' (DIFFER)'}`;
        results.push({
          name: c.name, value: med, unit: 'ms',
          ...(extra ? {} : { target: 10, better: 'lower' as const, pass: med <= 10 }),
          note: `median of ${REPS} calls as service_role, ${c.what}, largest account, ${EVENTS} events; p95 ${ms2(percentile(m.service, 0.95))} ms; ${answer}${extra ? '; extra, no target' : '; target median <= 10 ms'}`,
        });
        results.push({ name: `${c.name}_p95`, value: ms2(percentile(m.service, 0.95)), unit: 'ms', note: `p95 of the same ${REPS} calls` });
        results.push({
          name: `${c.name}_member`, value: ms2(median(m.member)), unit: 'ms', baseline: c.name, better: 'lower', ...(extra ? {} : { target: 1.5 }),
          note: `median of ${REPS} calls as a member (authenticated, RLS), alternating with the service calls; p95 ${ms2(percentile(m.member, 0.95))} ms${extra ? '' : '; target <= 1.5 x service_role'}`,
        });
        results.push({ name: `${c.name}_raw_scan`, value: ms2(median(m.raw)), unit: 'ms', note: `the same question as one SQL over tally.events (median of ${RAW_REPS}): ${c.what}` });
        results.push({
          name: `${c.name}_vs_raw_scan`, value: med, unit: 'ms', baseline: `${c.name}_raw_scan`, better: 'lower', ...(extra ? {} : { target: 0.01 }),
          note: `the function's median over the raw scan's${extra ? '' : '; target <= 0.01 (at least 100x faster)'}`,
        });
        results.push({
          name: `${c.name}_${ts}`, value: ms2(median(s.service)), unit: 'ms',
          note: `median of ${REPS} calls as service_role at ${SMALL} events; p95 ${ms2(percentile(s.service, 0.95))} ms; raw scan ${ms2(median(s.raw))} ms; requests: function ${s.total}, raw scan ${s.rawTotal}`,
        });
        results.push({
          name: `${c.name}_${tl}_vs_${ts}`, value: med, unit: 'ms', baseline: `${c.name}_${ts}`, better: 'lower', ...(extra ? {} : { target: 2 }),
          note: `latency at ${EVENTS} events over latency at ${SMALL}${extra ? '' : '; target <= 2'}`,
        });
      }
    } finally {
      await pool.end();
      await db.drop();
    }
    return results;
  },
};
