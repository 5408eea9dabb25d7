/** `tally accounts create NAME` and `tally accounts list`: the billing tenants, through the client's wrappers. */
import type { Command } from 'commander';
import { z } from 'zod';
import { formatTable, utc, withTally } from './client.ts';
import { log } from './context.ts';
import { jsonOnly, parseOptions } from './options.ts';

const createOptions = z.strictObject({
  timezone: z.string().min(1, 'needs an IANA time zone such as Europe/Paris').default('UTC'),
  externalId: z.string().min(1, 'needs a value').optional(),
  json: z.boolean().optional(),
});
// create_account's own bound (1 to 200 characters after trimming), checked before connecting
const nameArgument = z
  .string()
  .trim()
  .min(1, 'NAME must not be empty')
  .refine((n) => [...n].length <= 200, 'NAME must be at most 200 characters');

export function registerAccounts(program: Command): void {
  const accounts = program
    .command('accounts')
    .description('create and list accounts (the billing tenants events belong to)')
    .addHelpText(
      'after',
      '\n  tally accounts create NAME [--timezone TZ] [--external-id ID] [--json]\n' +
        '  tally accounts list [--json]\n\n' +
        'Exit codes: 0 done, 1 failed (e.g. invalid_timezone, duplicate_external_id), 2 bad usage.',
    );

  accounts
    .command('create')
    .description('create an account and print its id (stdout: the id alone, so ACCOUNT=$(tally accounts create Acme) works)')
    .argument('<name>', 'the account name, 1 to 200 characters')
    .option('--timezone <tz>', "IANA time zone that defines the account's days and months (default UTC)")
    .option('--external-id <id>', 'your own unique key for it (a Stripe customer id, say)')
    .option('--json', 'print the whole account as JSON')
    .action(async (name: string, raw) => {
      const options = parseOptions(createOptions, raw);
      const accountName = parseOptions(nameArgument, name);
      const account = await withTally((tally) =>
        tally.createAccount({ name: accountName, timezone: options.timezone, externalId: options.externalId ?? null }),
      );
      if (options.json) {
        process.stdout.write(JSON.stringify(account, null, 2) + '\n');
        return;
      }
      process.stdout.write(`${account.id}\n`);
      log(`created account "${account.name}" (time zone ${account.timezone}${account.externalId ? `, external id ${account.externalId}` : ''})`);
    });

  accounts
    .command('list')
    .description('list every account, oldest first')
    .option('--json', 'print a JSON array')
    .action(async (raw) => {
      const options = parseOptions(jsonOnly, raw);
      const list = await withTally((tally) => tally.listAccounts());
      if (options.json) {
        process.stdout.write(JSON.stringify(list, null, 2) + '\n');
        return;
      }
      if (list.length === 0) {
        process.stdout.write('no accounts yet: create one with `tally accounts create NAME`, or load the demo with `tally demo`\n');
        return;
      }
      process.stdout.write(
        formatTable(
          ['ID', 'NAME', 'TIME ZONE', 'EXTERNAL ID', 'CREATED'],
          list.map((a) => [a.id, a.name, a.timezone, a.externalId ?? '-', utc(a.createdAt)]),
        ) + '\n',
      );
    });
}
