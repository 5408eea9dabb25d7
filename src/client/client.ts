/**
 * The TypeScript client: typed wrappers around Tally's public SQL functions.
 *
 *   const tally = createTally({ connectionString: process.env.DATABASE_URL });
 *   const { accepted } = await tally.recordEvents([{ accountId, eventType: 'api_call' }]);
 *
 * Every wrapper validates its input with zod before any round trip (InvalidInputError),
 * calls the function with named arguments and casts, maps Postgres errors to typed
 * errors (src/client/errors.ts) and parses the result with zod into camelCase. Value rules
 * (money, counts, ids, timestamps): src/client/schemas.ts.
 */
import type pg from 'pg';
import { createPool } from '../database/pool.ts';
import { withTransaction } from '../database/transaction.ts';
import { accountsApi } from './accounts.ts';
import { analyticsApi } from './analytics.ts';
import { apiKeysApi } from './api-keys.ts';
import { eventsApi } from './events.ts';
import { maintenanceApi } from './maintenance.ts';
import { metersApi } from './meters.ts';
import { pricesApi } from './prices.ts';
import { rollupsApi } from './rollups.ts';
import { toTallyError } from './errors.ts';
import { parseInput, type Queryable } from './sql.ts';
import { uuid } from './schemas.ts';

export type TallyOptions =
  | {
      connectionString: string;
      /** application_name of the pool's connections (default 'tally'); visible in pg_stat_activity. */
      applicationName?: string;
      /** Pool size (default 10). */
      max?: number;
    }
  | { pool: pg.Pool };

/** Every wrapper, bound to one Queryable. */
export type TallyApi = ReturnType<typeof tallyApi>;

export interface Tally extends TallyApi {
  readonly pool: pg.Pool;
  /**
   * The same wrappers on one connection: inside the caller's transaction, or as a persona
   * (after `set local role authenticated` and request.jwt.claims, the way PostgREST does).
   */
  using(client: Queryable): TallyApi;
  /**
   * Runs `fn` as the signed-in user `userId` (a UUID), the way PostgREST serves a Supabase
   * request: one transaction on one connection, with request.jwt.claims =
   * {"sub": userId, "role": "authenticated"} and `SET LOCAL ROLE authenticated`. Row-level
   * security and the functions' membership checks then apply to that user; fn's result is
   * returned after the commit, and if it throws the transaction is rolled back. The pool's
   * login role must be allowed to `SET ROLE authenticated` (a member of it).
   */
  asUser<T>(userId: string, fn: (tally: TallyApi) => Promise<T>): Promise<T>;
  /** Ends the pool if createTally created it; a pool passed in is the caller's to end. */
  close(): Promise<void>;
}

export function tallyApi(q: Queryable) {
  return {
    ...accountsApi(q),
    ...analyticsApi(q),
    ...apiKeysApi(q),
    ...eventsApi(q),
    ...pricesApi(q),
    ...maintenanceApi(q),
    ...metersApi(q),
    ...rollupsApi(q),
  };
}

export function createTally(options: TallyOptions): Tally {
  const owned = !('pool' in options);
  // An idle connection the server drops (restart, pg_terminate_backend) is discarded by
  // the pool (createPool's 'error' listener); idle connections do not keep the process alive.
  const pool =
    'pool' in options
      ? options.pool
      : createPool({ connectionString: options.connectionString, applicationName: options.applicationName ?? 'tally', max: options.max ?? 10, allowExitOnIdle: true });
  let closed: Promise<void> | undefined;
  return {
    ...tallyApi(pool),
    pool,
    using: (client) => tallyApi(client),
    asUser: (userId, fn) => asUser(pool, userId, fn),
    close() {
      if (!owned) return Promise.resolve();
      closed ??= pool.end();
      return closed;
    },
  };
}

/**
 * `tally.asUser(userId, fn)` for a pool of your own: fn gets the wrappers bound to one
 * connection of `pool`, in a transaction as the Supabase user `userId` (see Tally.asUser).
 * The `sub` must come from the app's own verified session: whoever sets it is that user.
 */
export async function asUser<T>(pool: pg.Pool, userId: string, fn: (tally: TallyApi) => Promise<T>): Promise<T> {
  const sub = parseInput('asUser', uuid, userId);
  const client = await pool.connect();
  // a connection cut while checked out fails its query instead of the process, and is not reused
  let lost: Error | undefined;
  const onError = (err: Error) => (lost ??= err);
  client.on('error', onError);
  try {
    return await withTransaction(client, async () => {
      // PostgREST's order: the claims for this transaction only, then the role
      await client.query({
        text: "select set_config('request.jwt.claims', $1::text, true)",
        values: [JSON.stringify({ sub, role: 'authenticated' })],
      });
      await client.query('set local role authenticated');
      return fn(tallyApi(client));
    });
  } catch (err) {
    throw toTallyError(err);
  } finally {
    client.off('error', onError);
    client.release(lost);
  }
}
