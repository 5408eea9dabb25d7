/** What every command shares: the stderr log line, exit codes, and the resolved database. */
import type pg from 'pg';
import { loadConfig } from '../database/config.ts';
import { readSchemaVersion } from '../database/migrate.ts';
import { connectClient, resolveDatabase, type ResolvedDatabase } from '../database/resolve.ts';
import { TallyError } from '../errors.ts';

export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export const log = (line: string) => process.stderr.write(`tally: ${line}\n`);

export interface DatabaseOptions {
  /** Log the embedded server's steps on stderr. */
  verbose?: boolean | undefined;
  /**
   * May this command create the embedded cluster (only `start` and `migrate` do)? Default
   * false: with no cluster in TALLY_DATA_DIR the command fails with `embedded_not_created`
   * and nothing is written to disk.
   */
  create?: boolean | undefined;
  /**
   * The schema the command needs: true = installed, a number = at least that version.
   * Otherwise it fails with `schema_outdated` before running.
   */
  schema?: boolean | number | undefined;
}

/**
 * Resolves the database (DATABASE_URL or the embedded server), checks the schema if asked,
 * runs `fn`, then stops an embedded server it started.
 */
export async function withDatabase<T>(o: DatabaseOptions, fn: (db: ResolvedDatabase) => Promise<T>): Promise<T> {
  const db = await resolveDatabase(loadConfig(), o.verbose ? log : undefined, { create: o.create ?? false });
  try {
    if (o.schema) await requireSchema(db.connectionString, o.schema === true ? 1 : o.schema);
    return await fn(db);
  } finally {
    await db.close();
  }
}

/** `schema_outdated` unless Tally's schema is installed at `minVersion` or later, read on `q` or on a connection of its own. */
export async function requireSchema(q: string | Pick<pg.ClientBase, 'query'>, minVersion: number): Promise<number> {
  const client = typeof q === 'string' ? await connectClient(q, 'tally-cli') : undefined;
  try {
    const version = await readSchemaVersion(client ?? (q as Pick<pg.ClientBase, 'query'>));
    if (version === undefined) throw new TallyError('schema_outdated', 'Tally is not installed in this database: run `tally migrate` first');
    if (version < minVersion) {
      throw new TallyError('schema_outdated', `the schema is at version ${version}; this command needs version ${minVersion}: run \`tally migrate\` first`);
    }
    return version;
  } finally {
    await client?.end().catch(() => undefined);
  }
}
