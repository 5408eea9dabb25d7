/**
 * The one `begin … commit` of Tally's TypeScript: the worker, the CLI, the migrator and
 * the tests all open their transactions with it.
 */

/** A connection that can run a statement: a pg.Client or a checked-out pg.PoolClient (never a pool: each query could take another connection). */
export interface TransactionClient {
  query(text: string): Promise<unknown>;
}

/**
 * Runs `fn` inside a transaction on `client`: `begin` (or `begin` with the given mode, such
 * as 'isolation level repeatable read'), then `commit` if `fn` resolves. If `fn` or the commit
 * throws, the transaction is rolled back and the error rethrown unchanged; a failing rollback
 * (the connection is gone, so is the transaction) is ignored.
 */
export async function withTransaction<T>(client: TransactionClient, fn: () => Promise<T>, mode?: string): Promise<T> {
  if (mode !== undefined && !/^[a-z ]+$/.test(mode)) throw new Error(`bad transaction mode ${mode}`);
  await client.query(mode ? `begin ${mode}` : 'begin');
  try {
    const result = await fn();
    await client.query('commit');
    return result;
  } catch (err) {
    await client.query('rollback').catch(() => undefined);
    throw err;
  }
}
