/** What the commands built on the TypeScript client share: a client on the resolved database, and plain-text tables. */
import { createTally, type Tally } from '../client/client.ts';
import { connectPool } from '../database/pool.ts';
import type { ResolvedDatabase } from '../database/resolve.ts';
import { requireSchema, withDatabase } from './context.ts';

/**
 * Runs `fn` with a client on the resolved database (one connection), then closes both.
 * Like the other commands it first checks that the schema is installed (`schema_outdated`)
 * and connects through the database layer (`database_unreachable`, `database_auth_failed`).
 */
export function withTally<T>(fn: (tally: Tally, db: ResolvedDatabase) => Promise<T>): Promise<T> {
  return withDatabase({}, async (db) => {
    const pool = await connectPool({ connectionString: db.connectionString, applicationName: 'tally-cli', max: 1 });
    const tally = createTally({ pool });
    try {
      await requireSchema(pool, 1);
      return await fn(tally, db);
    } finally {
      await pool.end().catch(() => undefined);
    }
  });
}

/** Columns two spaces apart under an upper-case header; the columns in `right` (indexes) are right-aligned, for numbers. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[], right: readonly number[] = []): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (right.includes(i) ? c.padStart(widths[i] ?? 0) : i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ');
  return [line(header), ...rows.map(line)].join('\n');
}

/** An instant as `2026-12-01 08:21:36Z` (UTC, to the second). */
export const utc = (d: Date | null | undefined): string => (d ? d.toISOString().replace('T', ' ').replace(/\.\d{3}Z$/, 'Z') : '-');
