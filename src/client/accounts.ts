/** Accounts and their members: tally.create_account, update_account, set/remove_account_member, has_role_on_account; the accounts list. */
import { z } from 'zod';
import { callRow, callValue, parseInput, selectRows, type Queryable } from './sql.ts';
import { role, timestamp, uuid, type Role } from './schemas.ts';

const accountRow = z
  .object({
    id: uuid,
    name: z.string(),
    external_id: z.string().nullable(),
    timezone: z.string(),
    created_at: timestamp,
    updated_at: timestamp,
  })
  .transform((r) => ({
    id: r.id,
    name: r.name,
    externalId: r.external_id,
    timezone: r.timezone,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  }));
export type Account = z.output<typeof accountRow>;

const memberRow = z
  .object({ account_id: uuid, user_id: uuid, role, created_at: timestamp })
  .transform((r) => ({ accountId: r.account_id, userId: r.user_id, role: r.role, createdAt: r.created_at }));
export type AccountMember = z.output<typeof memberRow>;

const createAccountInput = z.strictObject({
  name: z.string(),
  externalId: z.string().nullish(),
  timezone: z.string().optional(),
  ownerId: uuid.nullish(),
});
const updateAccountInput = z.strictObject({
  accountId: uuid,
  name: z.string().optional(),
  externalId: z.string().optional(),
  timezone: z.string().optional(),
});
const memberInput = z.strictObject({ accountId: uuid, userId: uuid });
const setMemberInput = memberInput.extend({ role });
const hasRoleInput = z.strictObject({ accountId: uuid, role: role.optional() });
const listAccountsInput = z.strictObject({ externalId: z.string().optional() });

export function accountsApi(q: Queryable) {
  return {
    /** Creates an account; a service caller may name any owner (or none), a signed-in user always owns it. */
    async createAccount(input: z.input<typeof createAccountInput>): Promise<Account> {
      const p = parseInput('createAccount', createAccountInput, input);
      return callRow(
        q,
        'create_account',
        [
          ['p_name', p.name, 'text'],
          ['p_external_id', p.externalId ?? undefined, 'text'],
          ['p_timezone', p.timezone, 'text'],
          ['p_owner_id', p.ownerId ?? undefined, 'uuid'],
        ],
        accountRow,
      );
    },

    /** Changes name, externalId or timezone; fields left out keep their value. Needs admin. */
    async updateAccount(input: z.input<typeof updateAccountInput>): Promise<Account> {
      const p = parseInput('updateAccount', updateAccountInput, input);
      return callRow(
        q,
        'update_account',
        [
          ['p_account_id', p.accountId, 'uuid'],
          ['p_name', p.name, 'text'],
          ['p_external_id', p.externalId, 'text'],
          ['p_timezone', p.timezone, 'text'],
        ],
        accountRow,
      );
    },

    /** Adds a member or changes their role. */
    async setAccountMember(input: { accountId: string; userId: string; role: Role }): Promise<AccountMember> {
      const p = parseInput('setAccountMember', setMemberInput, input);
      return callRow(
        q,
        'set_account_member',
        [
          ['p_account_id', p.accountId, 'uuid'],
          ['p_user_id', p.userId, 'uuid'],
          ['p_role', p.role, 'text'],
        ],
        memberRow,
      );
    },

    /** Removes a member; false when they were not one. */
    async removeAccountMember(input: { accountId: string; userId: string }): Promise<boolean> {
      const p = parseInput('removeAccountMember', memberInput, input);
      return callValue(
        q,
        'remove_account_member',
        [
          ['p_account_id', p.accountId, 'uuid'],
          ['p_user_id', p.userId, 'uuid'],
        ],
        z.boolean(),
      );
    },

    /**
     * Whether the current Supabase user (auth.uid() from request.jwt.claims) holds at least
     * `role` (default viewer) on the account. On a plain service connection there is no
     * user, so it is false: call it through `tally.using(client)` on a user's transaction.
     */
    async hasRoleOnAccount(input: { accountId: string; role?: Role }): Promise<boolean> {
      const p = parseInput('hasRoleOnAccount', hasRoleInput, input);
      return callValue(
        q,
        'has_role_on_account',
        [
          ['p_account_id', p.accountId, 'uuid'],
          ['p_role', p.role, 'text'],
        ],
        z.boolean(),
      );
    },

    /**
     * The accounts the caller may see (all of them for a service; a signed-in user's own
     * through row-level security), oldest first; `externalId` picks the one with that key.
     */
    async listAccounts(input: { externalId?: string } = {}): Promise<Account[]> {
      const p = parseInput('listAccounts', listAccountsInput, input);
      return selectRows(
        q,
        'listAccounts',
        `select a.id, a.name, a.external_id, a.timezone, a.created_at, a.updated_at from tally.accounts a
          where ($1::text is null or a.external_id = $1::text) order by a.created_at, a.id`,
        [p.externalId ?? null],
        accountRow,
      );
    },
  };
}
