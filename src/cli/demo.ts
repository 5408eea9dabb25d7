/**
 * `tally demo`: loads the seeded demo dataset (src/cli/demo-data.ts) through the client's
 * wrappers, then folds everything into the rollups. Idempotent: accounts are found by
 * their external id, prices are set at a fixed instant (setting it again replaces it),
 * every event and refused item carries an idempotency key, and the 30 days are anchored
 * to the day the demo accounts were first created, so a later run regenerates the very
 * same events.
 */
import type { Command } from 'commander';
import { z } from 'zod';
import type { Account } from '../client/accounts.ts';
import type { Tally } from '../client/client.ts';
import { ConflictError } from '../client/errors.ts';
import { importEventsJson } from '../client/events.ts';
import { count, decimal } from '../client/schemas.ts';
import { selectRows } from '../client/sql.ts';
import { TallyError } from '../errors.ts';
import { formatTable, withTally } from './client.ts';
import { log } from './context.ts';
import { cents, int } from './format.ts';
import {
  DEMO_ACCOUNTS, DEMO_DAYS, DEMO_PRICES, anchorDay, demoEvents, demoRefusals, pricesEffectiveFrom, type DemoAccount, type WireEvent,
} from './demo-data.ts';
import { parseOptions } from './options.ts';
import { noProgress, progressDisplay, type ProgressDisplay } from './progress.ts';
import { foldPending } from './rollup.ts';

const demoOptions = z.strictObject({ json: z.boolean().optional(), progress: z.boolean().default(true) });

/** The source of the demo's ingestion: refused items are in rejected_events under 'import:demo'. */
export const DEMO_SOURCE = 'demo';
const BATCH = 5000;
const DAY_MS = 86_400_000;

export interface DemoTotals {
  accountId: string;
  name: string;
  timezone: string;
  apiCalls: number;
  uploads: number;
  llmCalls: number;
  cachedCalls: number;
  /** LLM cost over the window, exact decimal text. */
  costUsd: string;
  /** potential_cost_usd − cost_usd: what the cache saved. */
  savedUsd: string;
}

export interface DemoSummary {
  elapsedMs: number;
  window: { from: string; to: string };
  accounts: { id: string; externalId: string; name: string; timezone: string; created: boolean }[];
  prices: { provider: string; model: string; inputUsdPerMtok: string; outputUsdPerMtok: string; effectiveFrom: string }[];
  events: { generated: number; accepted: number; duplicates: number; alreadyLoaded: boolean };
  refused: { sent: number; codes: string[]; keptInRejectedEvents: number; source: string };
  rollups: { folded: number; watermark: number };
  totals: DemoTotals[];
}

async function demoAccount(tally: Tally, spec: DemoAccount): Promise<{ account: Account; created: boolean }> {
  const [found] = await tally.listAccounts({ externalId: spec.externalId });
  if (found) return { account: found, created: false };
  try {
    return { account: await tally.createAccount({ name: spec.name, timezone: spec.timezone, externalId: spec.externalId }), created: true };
  } catch (err) {
    // another `tally demo` created it in the meantime
    const [raced] = err instanceof ConflictError ? await tally.listAccounts({ externalId: spec.externalId }) : [];
    if (raced) return { account: raced, created: false };
    throw err;
  }
}

/** A bar on a terminal; nothing otherwise (the demo's steps are logged as lines). */
function progressBar(enabled: boolean, total: number): ProgressDisplay<number> {
  if (!enabled) return noProgress;
  return progressDisplay<number>({ stream: process.stderr, format: () => 'tally: demo: recording {bar} {value}/{total} events', bar: (done) => ({ value: done, total }) });
}

export async function loadDemo(tally: Tally, connectionString: string, showProgress: boolean): Promise<DemoSummary> {
  const started = Date.now();
  const say = (line: string) => {
    if (showProgress) log(`demo: ${line}`);
  };
  const accounts: { spec: DemoAccount; account: Account; created: boolean }[] = [];
  for (const spec of DEMO_ACCOUNTS) accounts.push({ spec, ...(await demoAccount(tally, spec)) });
  const anchor = anchorDay(new Date(Math.min(...accounts.map((a) => a.account.createdAt.getTime()))));
  const from = new Date(anchor.getTime() - DEMO_DAYS * DAY_MS);
  say(`${accounts.length} accounts (${accounts.filter((a) => a.created).length} created); ${DEMO_DAYS} days, ${from.toISOString().slice(0, 10)} to ${lastDay(anchor.toISOString())}`);

  const effectiveFrom = pricesEffectiveFrom(anchor);
  const prices = [];
  for (const p of DEMO_PRICES) {
    const price = await tally.setModelPrice({ ...p, effectiveFrom });
    prices.push({ provider: price.provider, model: price.model, inputUsdPerMtok: price.inputUsdPerMtok, outputUsdPerMtok: price.outputUsdPerMtok, effectiveFrom: price.effectiveFrom.toISOString() });
  }

  const events: WireEvent[] = accounts.flatMap((a) => demoEvents(a.spec, a.account.id, anchor));
  const ids = accounts.map((a) => a.account.id);
  // Idempotency keys are remembered for ingest.idempotency_retention (7 days): a run after
  // that would store the events again, so first count what a previous run stored.
  const [stored] = await selectRows(
    tally.pool,
    'demo',
    "select count(*) as n from tally.events e where e.account_id = any($1::uuid[]) and e.idempotency_key like 'demo:%'",
    [ids],
    countRow,
  );
  const alreadyLoaded = (stored?.n ?? 0) >= events.length;
  let accepted = 0;
  let duplicates = 0;
  if (alreadyLoaded) {
    duplicates = events.length;
    say(`the ${events.length} demo events are already loaded`);
  } else {
    say(`recording ${events.length} events in batches of ${BATCH}`);
    const bar = progressBar(showProgress, events.length);
    bar.update(0);
    try {
      for (let i = 0; i < events.length; i += BATCH) {
        const result = await importEventsJson(tally.pool, JSON.stringify(events.slice(i, i + BATCH)), DEMO_SOURCE, i + 1);
        accepted += result.accepted;
        duplicates += result.duplicates;
        if (result.rejected.length > 0) {
          const r = result.rejected[0]!;
          throw new TallyError('demo_failed', `the database refused ${result.rejected.length} demo event(s), e.g. item ${r.index}: ${r.code}: ${r.message}`);
        }
        bar.update(Math.min(events.length, i + BATCH));
      }
    } finally {
      bar.stop();
    }
  }

  // the refused items: kept once each in rejected_events (they carry an account and a key)
  const refusals = demoRefusals(ids, anchor);
  const refused = await importEventsJson(tally.pool, JSON.stringify(refusals), DEMO_SOURCE, events.length + 1);
  const [kept] = await selectRows(tally.pool, 'demo', 'select count(*) as n from tally.rejected_events where source = $1::text', [`import:${DEMO_SOURCE}`], countRow);

  // last month's days went to the default partition: give them their partition
  await tally.ensurePartitions();
  say('folding into the rollups');
  const fold = await foldPending(connectionString, 500_000, () => undefined);

  const totals = await selectRows(
    tally.pool,
    'demo',
    `select d.account_id,
            coalesce(sum(d.requests) filter (where d.event_type = 'api_call'), 0) as api_calls,
            coalesce(sum(d.requests) filter (where d.event_type = 'file_upload'), 0) as uploads,
            coalesce(sum(d.requests) filter (where d.event_type = 'llm_call'), 0) as llm_calls,
            coalesce(sum(d.cached) filter (where d.event_type = 'llm_call'), 0) as cached,
            coalesce(sum(d.cost_usd), 0)::text as cost_usd,
            coalesce(sum(d.potential_cost_usd - d.cost_usd), 0)::text as saved_usd
       from tally.usage_daily d
      where d.account_id = any($1::uuid[])
      group by d.account_id`,
    [ids],
    totalsRow,
  );
  const byAccount = new Map(totals.map((r) => [r.account_id, r]));

  return {
    elapsedMs: Date.now() - started,
    window: { from: from.toISOString(), to: anchor.toISOString() },
    accounts: accounts.map((a) => ({ id: a.account.id, externalId: a.spec.externalId, name: a.account.name, timezone: a.account.timezone, created: a.created })),
    prices,
    events: { generated: events.length, accepted, duplicates, alreadyLoaded },
    refused: { sent: refusals.length, codes: refused.rejected.map((r) => r.code), keptInRejectedEvents: kept?.n ?? 0, source: `import:${DEMO_SOURCE}` },
    rollups: { folded: fold.events, watermark: fold.watermark },
    totals: accounts.map((a) => {
      const t = byAccount.get(a.account.id);
      return {
        accountId: a.account.id,
        name: a.account.name,
        timezone: a.account.timezone,
        apiCalls: t?.api_calls ?? 0,
        uploads: t?.uploads ?? 0,
        llmCalls: t?.llm_calls ?? 0,
        cachedCalls: t?.cached ?? 0,
        costUsd: t?.cost_usd ?? '0',
        savedUsd: t?.saved_usd ?? '0',
      };
    }),
  };
}

const countRow = z.object({ n: count });
const totalsRow = z.object({
  account_id: z.string(),
  api_calls: count,
  uploads: count,
  llm_calls: count,
  cached: count,
  cost_usd: decimal,
  saved_usd: decimal,
});

/** The last day of a window that ends (exclusive) at this UTC midnight. */
const lastDay = (to: string) => new Date(new Date(to).getTime() - DAY_MS).toISOString().slice(0, 10);

export function formatDemoSummary(s: DemoSummary): string {
  const created = s.accounts.filter((a) => a.created).length;
  const lines = [
    `demo loaded in ${(s.elapsedMs / 1000).toFixed(1)} s: ${DEMO_DAYS} days, ${s.window.from.slice(0, 10)} to ${lastDay(s.window.to)} (UTC)`,
    `  accounts  ${s.accounts.length} (${created} created, ${s.accounts.length - created} already there)`,
    `  prices    ${s.prices.map((p) => `${p.provider}/${p.model}`).join(', ')}`,
    `  events    ${int(s.events.generated)}: ${int(s.events.accepted)} stored, ${int(s.events.duplicates)} already there`,
    `  refused   ${s.refused.sent} (${s.refused.codes.join(', ')}): ${s.refused.keptInRejectedEvents} kept in tally.rejected_events, source '${s.refused.source}'`,
    `  rollups   ${int(s.rollups.folded)} events folded; watermark ${s.rollups.watermark}`,
    '',
    formatTable(
      ['ACCOUNT', 'ID', 'TIME ZONE', 'API CALLS', 'UPLOADS', 'LLM CALLS', 'CACHED', 'LLM COST', 'SAVED BY CACHE'],
      s.totals.map((t) => [t.name, t.accountId, t.timezone, int(t.apiCalls), int(t.uploads), int(t.llmCalls), int(t.cachedCalls), `$${cents(t.costUsd)}`, `$${cents(t.savedUsd)}`]),
      [3, 4, 5, 6, 7, 8],
    ),
  ];
  return lines.join('\n');
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('load a reproducible demo dataset (3 accounts, 30 days of API calls, uploads and LLM calls) and roll it up')
    .option('--json', 'print the summary as JSON')
    .option('--no-progress', 'print no progress on stderr')
    .addHelpText(
      'after',
      '\nWhat it loads (generated from a fixed seed, so the same for everyone):\n' +
        '  - 3 accounts, external ids demo-acme (America/New_York), demo-globex (Europe/Berlin), demo-initech (Asia/Tokyo);\n' +
        '  - model prices for openai/gpt-4o, gpt-4o-mini, anthropic/claude-sonnet-4, claude-3-5-haiku;\n' +
        '  - 30 days of api_call, file_upload and llm_call events (a quarter of the LLM calls cached), ending at\n' +
        '    the UTC midnight of the day the demo accounts were created, busier on local working hours;\n' +
        "  - 5 items the validator refuses, kept in tally.rejected_events (source 'import:demo');\n" +
        '  - then the rollups: run_rollups until nothing is pending.\n' +
        'Running it again adds nothing: accounts are found by external id, every event has an idempotency key.\n' +
        'Exit codes: 0 loaded, 1 failed (e.g. schema_outdated), 2 bad usage.',
    )
    .action(async (raw) => {
      const options = parseOptions(demoOptions, raw);
      const summary = await withTally((tally, db) => loadDemo(tally, db.connectionString, options.progress));
      process.stdout.write(options.json ? JSON.stringify(summary, null, 2) + '\n' : formatDemoSummary(summary) + '\n');
    });
}
