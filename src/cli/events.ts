/**
 * `tally events record JSON|-`: one event object or an array of them, through
 * tally.record_events (the client's recordEventsJson), with its accepted / duplicates /
 * rejected report. Fields are the SQL API's, snake_case (docs/sql-api.md, "The event").
 */
import fs from 'node:fs';
import type { Command } from 'commander';
import { z } from 'zod';
import { recordEventsJson } from '../client/events.ts';
import { uuid } from '../client/schemas.ts';
import { TallyError, UsageError } from '../errors.ts';
import { withTally } from './client.ts';
import { parseOptions } from './options.ts';

const recordOptions = z.strictObject({ account: uuid.optional(), json: z.boolean().optional(), strict: z.boolean().optional() });

/** `--account`: the account_id of every object item that names neither an account nor a key. */
function withDefaultAccount(items: unknown[], accountId: string | undefined): unknown[] {
  if (!accountId) return items;
  return items.map((item) =>
    typeof item === 'object' && item !== null && !Array.isArray(item) && !('account_id' in item) && !('api_key_id' in item)
      ? { account_id: accountId, ...item }
      : item,
  );
}

/** The argument (or stdin for `-`) as a JSON array of items; anything else is a UsageError. */
export function parseEventsArgument(text: string, fromStdin = false): unknown[] {
  if (text.trim() === '') {
    throw new UsageError(
      fromStdin ? 'no events on stdin: pipe a JSON object or array into `tally events record -`' : 'no events given: pass a JSON object or array, or - to read one from stdin',
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`the events are not valid JSON (${(err as Error).message}); quote the argument: tally events record '{"account_id": "…", "event_type": "api_call"}'`);
  }
  if (Array.isArray(value)) {
    if (value.length === 0) throw new UsageError('the array is empty: nothing to record');
    return value;
  }
  if (typeof value === 'object' && value !== null) return [value];
  throw new UsageError(`the events must be a JSON object (one event) or an array of objects, not ${value === null ? 'null' : typeof value}`);
}

export function registerEvents(program: Command): void {
  const events = program
    .command('events')
    .description('record events from the command line')
    .addHelpText('after', "\n  tally events record '<json>' | - [--account ID] [--json] [--strict]");

  events
    .command('record')
    .description('record one event (a JSON object) or a batch (a JSON array) with tally.record_events')
    .argument('<json>', 'the event(s) as JSON, snake_case fields as in record_events; - reads them from stdin')
    .option('--account <id>', 'account_id of the items that name neither account_id nor api_key_id')
    .option('--json', 'print the result as JSON: {accepted, duplicates, conflicts: [{index, code, message, eventId}], rejected: [{index, code, message}]}')
    .option('--strict', 'exit 1 (events_rejected) when any item was refused or conflicted')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        `  tally events record --account $ACCOUNT '{"event_type": "api_call", "endpoint": "/v1/search", "status_code": 200}'\n` +
        `  tally events record '[{"api_key_id": "…", "event_type": "llm_call", "provider": "openai", "model": "gpt-4o", "tokens_in": 1200, "tokens_out": 340}]'\n` +
        '  jq -c . batch.json | tally events record -\n\n' +
        'Valid items are stored even when siblings are refused; every refused item is kept in\n' +
        'tally.rejected_events (source record_events) with its code. An idempotency_key makes a retry a duplicate;\n' +
        'the same key with a different payload is a conflict (not stored, the first event is kept).\n' +
        'Exit codes: 0 recorded (refusals included, unless --strict), 1 failed, 2 bad usage (not JSON, not an object or array).',
    )
    .action(async (argument: string, raw) => {
      const options = parseOptions(recordOptions, raw);
      const items = withDefaultAccount(parseEventsArgument(argument === '-' ? fs.readFileSync(0, 'utf8') : argument, argument === '-'), options.account);
      const result = await withTally((tally) => recordEventsJson(tally.pool, JSON.stringify(items)));
      if (options.json) {
        process.stdout.write(JSON.stringify(result, null, 2) + '\n');
      } else {
        const conflicts = result.conflicts.length > 0 ? ` · conflicts ${result.conflicts.length}` : '';
        const lines = [`accepted ${result.accepted} · duplicates ${result.duplicates}${conflicts} · rejected ${result.rejected.length}`];
        for (const c of result.conflicts) lines.push(`  [${c.index}] ${c.code}: ${c.message}`);
        for (const r of result.rejected) lines.push(`  [${r.index}] ${r.code}: ${r.message}`);
        if (result.rejected.length + result.conflicts.length > 0) lines.push('refused items are kept in tally.rejected_events (source record_events)');
        process.stdout.write(lines.join('\n') + '\n');
      }
      if (options.strict && result.rejected.length + result.conflicts.length > 0) {
        const conflicts = result.conflicts.length > 0 ? ` (${result.conflicts.length} of them idempotency conflicts)` : '';
        throw new TallyError('events_rejected', `${result.rejected.length + result.conflicts.length} of ${items.length} item(s) refused${conflicts}`);
      }
    });
}
