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
import { accountsApi } from './accounts.ts';
import { apiKeysApi } from './api-keys.ts';
import { eventsApi } from './events.ts';
import { maintenanceApi } from './maintenance.ts';
import { metersApi } from './meters.ts';
import { pricesApi } from './prices.ts';
import { rollupsApi } from './rollups.ts';
import type { Queryable } from './sql.ts';

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
  /** Ends the pool if createTally created it; a pool passed in is the caller's to end. */
  close(): Promise<void>;
}

export function tallyApi(q: Queryable) {
  return {
    ...accountsApi(q),
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
    close() {
      if (!owned) return Promise.resolve();
      closed ??= pool.end();
      return closed;
    },
  };
}
