/**
 * `tally verify`: compares the rollup tables with the raw events over a time range
 * (tally.verify_rollups) and reports every bucket that differs.
 */
import { z } from 'zod';
import { camelToSnake, differingMetrics, rollupsApi, type RollupMismatch } from '../client/rollups.ts';
import { connectClient } from '../database/resolve.ts';
import type { Command } from 'commander';
import { TallyError } from '../errors.ts';
import { withDatabase } from './context.ts';
import { instant, parseOptions } from './options.ts';

export interface Mismatch {
  grain: RollupMismatch['grain'];
  accountId: string;
  bucket: string;
  /** The dimension tuple (hourly, daily, monthly), else null (hourly_totals: the hour's totals). */
  dimKey: string | null;
  /** The dimension and its value (grains by dimension), else null. */
  dimension: string | null;
  value: string | null;
  /**
   * The metrics that differ (by their column names), with the value computed from events and
   * the stored one: money as decimal strings, counts as numbers.
   */
  metrics: Record<string, { expected: unknown; actual: unknown }>;
}

export interface VerifyReport {
  from: Date;
  to: Date;
  mismatches: Mismatch[];
}

export async function verifyRollups(connectionString: string, from: Date, to: Date): Promise<VerifyReport> {
  const client = await connectClient(connectionString, 'tally-verify');
  try {
    const found = await rollupsApi(client).verifyRollups({ from, to });
    const mismatches = found.map((m) => ({
      grain: m.grain,
      accountId: m.accountId,
      bucket: m.bucket,
      dimKey: m.dimKey,
      dimension: m.dimension,
      value: m.value,
      metrics: Object.fromEntries(Object.entries(differingMetrics(m)).map(([name, v]) => [camelToSnake(name), v])),
    }));
    return { from, to, mismatches };
  } finally {
    await client.end().catch(() => undefined);
  }
}

// a decimal string as the number it is (no quotes), anything else as JSON
const shown = (v: unknown): string => (typeof v === 'string' ? v : JSON.stringify(v));

export function formatVerify(report: VerifyReport, limit = 20): string {
  const range = `${report.from.toISOString()} to ${report.to.toISOString()}`;
  if (report.mismatches.length === 0) return `rollups consistent with the raw events from ${range} (hourly, hourly totals, daily, monthly, and by dimension)`;
  const lines = [`${report.mismatches.length} bucket(s) differ from the raw events from ${range}:`];
  for (const m of report.mismatches.slice(0, limit)) {
    const what = Object.entries(m.metrics)
      .map(([name, v]) => `${name} expected ${shown(v.expected)} stored ${shown(v.actual)}`)
      .join('; ');
    const which = m.dimKey !== null ? `dims ${m.dimKey}` : m.dimension !== null ? `${m.dimension} ${m.value ?? '(none)'}` : 'all tuples';
    lines.push(`  ${m.grain} ${m.bucket} account ${m.accountId} ${which}: ${what}`);
  }
  if (report.mismatches.length > limit) lines.push(`  … and ${report.mismatches.length - limit} more (--json lists all)`);
  lines.push(
    `Rebuild them from the raw events with \`tally rollup --recompute --from ${report.from.toISOString()} --to ${report.to.toISOString()}\`` +
      ' (tally.recompute_rollups), then verify again; if they still differ, report a bug.',
  );
  return lines.join('\n');
}

const verifyOptions = z
  .strictObject({ from: instant().optional(), to: instant().optional(), json: z.boolean().optional() })
  .transform((o) => {
    const to = o.to ?? new Date();
    return { ...o, to, from: o.from ?? new Date(to.getTime() - 7 * 86_400_000) };
  })
  .refine((o) => o.from < o.to, { message: 'must be earlier than --to', path: ['from'] });

export function registerVerify(program: Command): void {
  program
    .command('verify')
    .description('compare the hourly, daily and monthly rollups with the raw events; exit 1 if any bucket differs')
    .option('--from <time>', 'start of the range, ISO 8601 with offset (default: 7 days before --to)')
    .option('--to <time>', 'end of the range, exclusive (default: now)')
    .option('--json', 'print every mismatch as JSON')
    .addHelpText(
      'after',
      '\nEvery bucket that overlaps the range is checked whole, against the events the rollups have\n' +
        'folded (id <= the watermark), metric by metric. At most 400 days per call.\n' +
        'Exit codes: 0 consistent, 1 a bucket differs (each one is listed) or the check failed, 2 bad usage.',
    )
    .action(async (raw) => {
      const options = parseOptions(verifyOptions, raw);
      await withDatabase({ schema: true }, async (db) => {
        const report = await verifyRollups(db.connectionString, options.from, options.to);
        process.stdout.write(options.json ? JSON.stringify(report, null, 2) + '\n' : formatVerify(report) + '\n');
        if (report.mismatches.length > 0) {
          throw new TallyError('rollups_mismatch', `${report.mismatches.length} bucket(s) differ from the raw events`);
        }
      });
    });
}
