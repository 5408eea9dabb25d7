/**
 * `tally verify`: compares the rollup tables with the raw events over a time range
 * (tally.verify_rollups) and reports every bucket that differs.
 */
import { z } from 'zod';
import { connectClient } from '../database/resolve.ts';
import type { Command } from 'commander';
import { TallyError } from '../errors.ts';
import { withDatabase } from './context.ts';
import { instant, parseOptions } from './options.ts';

const mismatchRow = z.object({
  grain: z.enum(['hourly', 'daily', 'monthly']),
  account_id: z.string(),
  bucket: z.string(),
  dim_key: z.string(),
  expected: z.record(z.string(), z.unknown()).nullable(),
  actual: z.record(z.string(), z.unknown()).nullable(),
});

export interface Mismatch {
  grain: 'hourly' | 'daily' | 'monthly';
  accountId: string;
  bucket: string;
  dimKey: string;
  /** The metrics that differ, with the value computed from events and the stored one. */
  metrics: Record<string, { expected: unknown; actual: unknown }>;
}

export interface VerifyReport {
  from: Date;
  to: Date;
  mismatches: Mismatch[];
}

function differingMetrics(expected: Record<string, unknown> | null, actual: Record<string, unknown> | null): Mismatch['metrics'] {
  const names = new Set([...Object.keys(expected ?? {}), ...Object.keys(actual ?? {})]);
  const out: Mismatch['metrics'] = {};
  for (const name of names) {
    const e = expected?.[name] ?? null;
    const a = actual?.[name] ?? null;
    if (JSON.stringify(e) !== JSON.stringify(a)) out[name] = { expected: e, actual: a };
  }
  return out;
}

export async function verifyRollups(connectionString: string, from: Date, to: Date): Promise<VerifyReport> {
  const client = await connectClient(connectionString, 'tally-verify');
  try {
    const { rows } = await client.query(
      'select grain, account_id, bucket, dim_key, expected, actual from tally.verify_rollups(p_from => $1::timestamptz, p_to => $2::timestamptz)',
      [from, to],
    );
    const mismatches = rows.map((raw) => {
      const r = mismatchRow.parse(raw);
      return { grain: r.grain, accountId: r.account_id, bucket: r.bucket, dimKey: r.dim_key, metrics: differingMetrics(r.expected, r.actual) };
    });
    return { from, to, mismatches };
  } finally {
    await client.end().catch(() => undefined);
  }
}

export function formatVerify(report: VerifyReport, limit = 20): string {
  const range = `${report.from.toISOString()} to ${report.to.toISOString()}`;
  if (report.mismatches.length === 0) return `rollups consistent with the raw events from ${range} (hourly, daily, monthly)`;
  const lines = [`${report.mismatches.length} bucket(s) differ from the raw events from ${range}:`];
  for (const m of report.mismatches.slice(0, limit)) {
    const what = Object.entries(m.metrics)
      .map(([name, v]) => `${name} expected ${JSON.stringify(v.expected)} stored ${JSON.stringify(v.actual)}`)
      .join('; ');
    lines.push(`  ${m.grain} ${m.bucket} account ${m.accountId} dims ${m.dimKey}: ${what}`);
  }
  if (report.mismatches.length > limit) lines.push(`  … and ${report.mismatches.length - limit} more (--json lists all)`);
  lines.push(
    `Rebuild them from the raw events with \`tally rollup --recompute --from ${report.from.toISOString()} --to ${report.to.toISOString()}\`` +
      ' (tally.recompute_rollups), then verify again; if they still differ, report a bug.',
  );
  return lines.join('\n');
}

const verifyOptions = z
  .strictObject({ from: instant('--from').optional(), to: instant('--to').optional(), json: z.boolean().optional() })
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
      await withDatabase(false, async (db) => {
        const report = await verifyRollups(db.connectionString, options.from, options.to);
        process.stdout.write(options.json ? JSON.stringify(report, null, 2) + '\n' : formatVerify(report) + '\n');
        if (report.mismatches.length > 0) {
          throw new TallyError('rollups_mismatch', `${report.mismatches.length} bucket(s) differ from the raw events`);
        }
      });
    });
}
