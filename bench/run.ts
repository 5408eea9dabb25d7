/**
 * `npm run bench [-- <suite> ...]`: runs the named suites (all when none is named) on
 * BENCH_DATABASE_URL, else DATABASE_URL, else the embedded PostgreSQL, writes
 * bench/results/<suite>.json and prints a table.
 */
import fs from 'node:fs';
import { Command } from 'commander';
import { loadConfig } from '../src/database/config.ts';
import { resolveDatabase } from '../src/database/resolve.ts';
import { scratchDatabaseFactory, withRatios, writeResults, type BenchSuite } from './lib.ts';

async function loadSuites(): Promise<BenchSuite[]> {
  const dir = new URL('./suites/', import.meta.url);
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.ts')).sort();
  return Promise.all(files.map(async (f) => ((await import(new URL(f, dir).href)) as { suite: BenchSuite }).suite));
}

function printTable(suite: string, results: ReturnType<typeof withRatios>): void {
  console.log(`\n${suite}`);
  console.table(
    results.map((r) => ({
      result: r.name,
      value: `${r.value} ${r.unit}`,
      'vs baseline': r.ratio === undefined ? '' : `${r.ratio} × ${r.baseline}`,
      target: r.target === undefined ? '' : `${r.better === 'lower' ? '≤' : '≥'} ${r.target}`,
      pass: r.pass === undefined ? '' : r.pass ? 'yes' : 'NO',
    })),
  );
}

const program = new Command('bench')
  .argument('[suites...]', 'suites to run (default: all)')
  .description('Tally benchmarks. Ratios are measured side by side in one run; absolute numbers depend on the machine.')
  .action(async (names: string[]) => {
    const all = await loadSuites();
    const unknown = names.filter((n) => !all.some((s) => s.name === n));
    if (unknown.length > 0) {
      console.error(`error: unknown suite ${unknown.join(', ')} (have: ${all.map((s) => s.name).join(', ')})`);
      process.exitCode = 2;
      return;
    }
    const chosen = names.length > 0 ? all.filter((s) => names.includes(s.name)) : all;
    const config = loadConfig();
    const db = await resolveDatabase({ ...config, databaseUrl: process.env.BENCH_DATABASE_URL || config.databaseUrl });
    try {
      for (const suite of chosen) {
        console.log(`running ${suite.name}: ${suite.description}`);
        const results = withRatios(
          await suite.run({
            serverUrl: db.connectionString,
            createDatabase: scratchDatabaseFactory(db.connectionString),
            log: (line) => console.log(`  ${line}`),
          }),
        );
        const file = await writeResults(suite.name, db.connectionString, results);
        printTable(suite.name, results);
        console.log(`wrote ${file}`);
      }
    } finally {
      await db.close();
    }
  });

await program.parseAsync(process.argv);
