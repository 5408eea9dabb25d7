/** API keys: tally.create_api_key, revoke_api_key, verify_api_key. */
import { z } from 'zod';
import { callRow, callValue, parseInput, type Queryable } from './sql.ts';
import { instantInput, timestamp, uuid } from './schemas.ts';

const createdKeyRow = z
  .object({
    id: uuid,
    account_id: uuid,
    name: z.string(),
    prefix: z.string(),
    secret: z.string(),
    expires_at: timestamp.nullable(),
  })
  .transform((r) => ({ id: r.id, accountId: r.account_id, name: r.name, prefix: r.prefix, secret: r.secret, expiresAt: r.expires_at }));
/** A new key. `secret` exists only here: the database keeps its hash. */
export type CreatedApiKey = z.output<typeof createdKeyRow>;

const verifiedRow = z.object({ api_key_id: uuid, account_id: uuid }).transform((r) => ({ apiKeyId: r.api_key_id, accountId: r.account_id }));
export type VerifiedApiKey = z.output<typeof verifiedRow>;

const createInput = z.strictObject({ accountId: uuid, name: z.string(), expiresAt: instantInput.nullish() });

export function apiKeysApi(q: Queryable) {
  return {
    /** Creates a key and returns its secret (the only time it is visible). Needs admin. */
    async createApiKey(input: { accountId: string; name: string; expiresAt?: Date | string | null }): Promise<CreatedApiKey> {
      const p = parseInput('createApiKey', createInput, input);
      return callRow(
        q,
        'create_api_key',
        [
          ['p_account_id', p.accountId, 'uuid'],
          ['p_name', p.name, 'text'],
          ['p_expires_at', p.expiresAt ?? undefined, 'timestamptz'],
        ],
        createdKeyRow,
      );
    },

    /**
     * Revokes a key by id (idempotent) and returns when it was revoked. A key the caller does not
     * administer, existing or not: ForbiddenError forbidden; an unknown id for a service caller:
     * NotFoundError api_key_not_found.
     */
    async revokeApiKey(id: string): Promise<Date> {
      const p = parseInput('revokeApiKey', uuid, id);
      return callValue(q, 'revoke_api_key', [['p_id', p, 'uuid']], timestamp);
    },

    /** Authenticates a presented secret: its key and account, or ApiKeyError (unknown/revoked/expired_api_key). */
    async verifyApiKey(secret: string): Promise<VerifiedApiKey> {
      const p = parseInput('verifyApiKey', z.string(), secret);
      return callRow(q, 'verify_api_key', [['p_secret', p, 'text']], verifiedRow);
    },
  };
}
