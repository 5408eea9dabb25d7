/**
 * Bench plumbing: a scratch database per run, timing helpers, and the result file
 * format of ../shared/DESIGN.md (bench/results/<suite>.json).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import pg from 'pg';

export interface BenchResult {
  name: string;
  value: number;
  unit: string;
  /** Name of the result this one is compared with, measured in the same run. */
  baseline?: string;
  ratio?: number;
  target?: number;
  /** Which way is better for `ratio`: 'higher' for throughput, 'lower' for latency. */
  better?: 'higher' | 'lower';
  pass?: boolean;
  note?: string;
}

export interface BenchContext {
  /** A server URL on which the suite may create and drop databases. */
  serverUrl: string;
  createDatabase(): Promise<{ name: string; url: string; drop(): Promise<void> }>;
  log(line: string): void;
}

export interface BenchSuite {
  name: string;
  description: string;
  run(ctx: BenchContext): Promise<BenchResult[]>;
}

export function databaseUrl(serverUrl: string, database: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

export async function withAdmin<T>(serverUrl: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export function scratchDatabaseFactory(serverUrl: string): BenchContext['createDatabase'] {
  return async () => {
    const name = `tally_bench_${randomBytes(5).toString('hex')}`;
    await withAdmin(serverUrl, (c) => c.query(`CREATE DATABASE ${name}`));
    return {
      name,
      url: databaseUrl(serverUrl, name),
      drop: () => withAdmin(serverUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => undefined),
    };
  };
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

/**
 * Runs `fn` `runs` times and returns the median of what it measured, in milliseconds.
 * `fn` receives a `time` wrapper so that set-up and tear-down stay outside the clock.
 */
export async function medianMs(runs: number, fn: (time: (work: () => Promise<unknown>) => Promise<void>) => Promise<void>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    await fn(async (work) => {
      const start = performance.now();
      await work();
      times.push(performance.now() - start);
    });
  }
  return median(times);
}

/** Adds ratio and pass to results that name a baseline. */
export function withRatios(results: BenchResult[]): BenchResult[] {
  const byName = new Map(results.map((r) => [r.name, r]));
  return results.map((r) => {
    const base = r.baseline ? byName.get(r.baseline) : undefined;
    if (!base || base.value === 0) return r;
    const ratio = Number((r.value / base.value).toFixed(3));
    const pass = r.target === undefined ? undefined : (r.better ?? 'higher') === 'higher' ? ratio >= r.target : ratio <= r.target;
    return { ...r, ratio, ...(pass === undefined ? {} : { pass }) };
  });
}

export async function writeResults(suite: string, serverUrl: string, results: BenchResult[]): Promise<string> {
  const postgres = await withAdmin(serverUrl, async (c) => (await c.query<{ server_version: string }>('show server_version')).rows[0]?.server_version);
  const file = new URL(`./results/${suite}.json`, import.meta.url);
  const body = {
    suite,
    runAt: new Date().toISOString(),
    machine: { cpus: os.cpus().length, memoryGiB: Math.round(os.totalmem() / 2 ** 30), postgres, node: process.versions.node },
    results,
  };
  fs.mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(body, null, 2) + '\n');
  return file.pathname;
}

/** The aggregate tables run_rollups writes: usage_hourly, usage_daily, usage_monthly and the per-dimension ones. */
export async function aggregateTables(pool: pg.Pool): Promise<string[]> {
  const { rows } = await pool.query<{ t: string }>(
    "select tablename as t from pg_catalog.pg_tables where schemaname = 'tally' and tablename like 'usage\\_%' order by 1",
  );
  return rows.map((r) => r.t);
}

/** Empties the ledger and every aggregate, the watermark at the newest id. */
export async function resetLedger(pool: pg.Pool): Promise<void> {
  const tables = (await aggregateTables(pool)).map((t) => `tally.${pg.escapeIdentifier(t)}`);
  await pool.query(`truncate tally.events, tally.idempotency_keys, ${tables.join(', ')}`);
  await pool.query("update tally.rollup_state set watermark = (select coalesce(pg_sequence_last_value(pg_get_serial_sequence('tally.events', 'id')), 0))");
}

/** Rows in each of the given tally tables. */
export async function rowCounts(pool: pg.Pool, tables: string[]): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const t of tables) counts[t] = Number((await pool.query(`select count(*)::float8 as n from tally.${pg.escapeIdentifier(t)}`)).rows[0].n);
  return counts;
}
