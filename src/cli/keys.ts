/**
 * `tally keys create|list|revoke`: API keys through the client's wrappers. The secret is
 * printed once, by create; the database keeps only its hash, so no command can show it again.
 */
import type { Command } from 'commander';
import { z } from 'zod';
import { uuid } from '../client/schemas.ts';
import { formatTable, utc, withTally } from './client.ts';
import { log } from './context.ts';
import { instant, jsonOnly, parseOptions } from './options.ts';

const createOptions = z.strictObject({
  account: uuid,
  name: z.string().trim().min(1, 'must not be empty').default('default'),
  expiresAt: instant().optional(),
  json: z.boolean().optional(),
});
const listOptions = z.strictObject({ account: uuid.optional(), json: z.boolean().optional() });
const keyId = z.string().refine((v) => uuid.safeParse(v).success, 'KEY_ID must be a key id (a UUID, see `tally keys list`)');

export function registerKeys(program: Command): void {
  const keys = program
    .command('keys')
    .description("create, list and revoke an account's API keys (the secret is shown once, at create)")
    .addHelpText(
      'after',
      '\n  tally keys create --account ID [--name NAME] [--expires-at TIME] [--json]\n' +
        '  tally keys list [--account ID] [--json]\n' +
        '  tally keys revoke KEY_ID [--json]\n\n' +
        'Exit codes: 0 done, 1 failed (e.g. account_not_found, api_key_not_found), 2 bad usage.',
    );

  keys
    .command('create')
    .description('create a key for an account; stdout gets the secret alone (KEY=$(tally keys create --account ID)), shown this once')
    .requiredOption('--account <id>', 'the account id (see `tally accounts list`)')
    .option('--name <name>', 'a label for the key (default "default")')
    .option('--expires-at <time>', 'when it stops working, ISO 8601 with an offset (default never)')
    .option('--json', 'print id, accountId, name, prefix, secret, expiresAt as JSON')
    .action(async (raw) => {
      const options = parseOptions(createOptions, raw);
      const key = await withTally((tally) =>
        tally.createApiKey({ accountId: options.account, name: options.name, expiresAt: options.expiresAt ?? null }),
      );
      if (options.json) {
        process.stdout.write(JSON.stringify(key, null, 2) + '\n');
        return;
      }
      process.stdout.write(`${key.secret}\n`);
      log(`created key ${key.id} "${key.name}" (prefix ${key.prefix}) for account ${key.accountId}; the secret above is shown this once: store it now`);
    });

  keys
    .command('list')
    .description('list keys (all, or one account\'s): id, account, name, prefix, state (active, revoked, expired); never a secret')
    .option('--account <id>', 'only this account\'s keys')
    .option('--json', 'print a JSON array')
    .action(async (raw) => {
      const options = parseOptions(listOptions, raw);
      const list = await withTally((tally) => tally.listApiKeys({ accountId: options.account }));
      if (options.json) {
        process.stdout.write(JSON.stringify(list, null, 2) + '\n');
        return;
      }
      if (list.length === 0) {
        process.stdout.write('no keys: create one with `tally keys create --account ID`\n');
        return;
      }
      process.stdout.write(
        formatTable(
          ['ID', 'ACCOUNT', 'NAME', 'PREFIX', 'STATE', 'CREATED', 'EXPIRES'],
          list.map((k) => [k.id, k.accountId, k.name, k.prefix, k.state, utc(k.createdAt), k.expiresAt ? utc(k.expiresAt) : 'never']),
        ) + '\n',
      );
    });

  keys
    .command('revoke')
    .description('revoke a key by id (again is fine: it keeps the first revocation time)')
    .argument('<key-id>', 'the key id (see `tally keys list`)')
    .option('--json', 'print {id, revokedAt} as JSON')
    .action(async (id: string, raw) => {
      const options = parseOptions(jsonOnly, raw);
      const keyIdValue = parseOptions(keyId, id);
      const revokedAt = await withTally((tally) => tally.revokeApiKey(keyIdValue));
      process.stdout.write(options.json ? JSON.stringify({ id: keyIdValue, revokedAt }, null, 2) + '\n' : `revoked key ${keyIdValue} at ${utc(revokedAt)}\n`);
    });
}
