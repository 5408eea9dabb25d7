/** API keys: tally.create_api_key, revoke_api_key, verify_api_key; the keys list. */
import { z } from 'zod';
import { callRow, callValue, parseInput, selectRows, type Queryable } from './sql.ts';
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

const keyRow = z
  .object({
    id: uuid,
    account_id: uuid,
    name: z.string(),
    prefix: z.string(),
    created_at: timestamp,
    expires_at: timestamp.nullable(),
    revoked_at: timestamp.nullable(),
    state: z.enum(['active', 'revoked', 'expired']),
  })
  .transform((r) => ({
    id: r.id,
    accountId: r.account_id,
    name: r.name,
    prefix: r.prefix,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    revokedAt: r.revoked_at,
    state: r.state,
  }));
/** A key as listed: never its secret (which is not stored) nor its hash. */
export type ApiKey = z.output<typeof keyRow>;

const createInput = z.strictObject({ accountId: uuid, name: z.string(), expiresAt: instantInput.nullish() });
const listInput = z.strictObject({ accountId: uuid.optional() });

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

    /**
     * The keys the caller may see (all for a service, a member's accounts' through
     * row-level security), optionally of one account, oldest first, with their state now:
     * active, revoked or expired.
     */
    async listApiKeys(input: { accountId?: string } = {}): Promise<ApiKey[]> {
      const p = parseInput('listApiKeys', listInput, input);
      return selectRows(
        q,
        'listApiKeys',
        `select k.id, k.account_id, k.name, k.prefix, k.created_at, k.expires_at, k.revoked_at,
                case when k.revoked_at is not null then 'revoked'
                     when k.expires_at is not null and k.expires_at <= now() then 'expired'
                     else 'active' end as state
           from tally.api_keys k
          where ($1::uuid is null or k.account_id = $1::uuid)
          order by k.created_at, k.id`,
        [p.accountId ?? null],
        keyRow,
      );
    },
  };
}
