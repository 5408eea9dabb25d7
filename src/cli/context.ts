/** What every command shares: the stderr log line, exit codes, and the resolved database. */
import { loadConfig } from '../database/config.ts';
import { resolveDatabase, type ResolvedDatabase } from '../database/resolve.ts';

export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export const log = (line: string) => process.stderr.write(`tally: ${line}\n`);

/** Resolves the database (DATABASE_URL or the embedded server), runs `fn`, then stops an embedded server it started. */
export async function withDatabase<T>(verbose: boolean | undefined, fn: (db: ResolvedDatabase) => Promise<T>): Promise<T> {
  const db = await resolveDatabase(loadConfig(), verbose ? log : undefined);
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}
