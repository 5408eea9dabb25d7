/**
 * `tally report`, run as the real CLI on a migrated database: the sections of the text
 * report, the fields of --json (the totals against the buckets just before, the
 * breakdowns, the month), ranges as local days, and bad usage (exit 2, one clear line).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTally, type Tally } from '../src/client/client.ts';
import { cleanEnv, runCli } from './helpers/cli.ts';
import { migratedDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let tally: Tally;
let env: NodeJS.ProcessEnv;
let accountId: string;
let parisId: string;

const DAY_MS = 86_400_000;
const todayUtc = Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate());
const daysAgo = (k: number, hours = 0) => new Date(todayUtc - k * DAY_MS + hours * 3_600_000);
const isoDay = (k: number) => daysAgo(k).toISOString().slice(0, 10);
const canonical = (v: string) => (v.includes('.') ? v.replace(/0+$/, '').replace(/\.$/, '') : v);

beforeAll(async () => {
  db = await migratedDatabase();
  env = cleanEnv({ DATABASE_URL: db.url, COLUMNS: '100' });
  tally = createTally({ pool: db.pool });
  accountId = (await tally.createAccount({ name: 'Reported' })).id;
  parisId = (await tally.createAccount({ name: 'Paris', timezone: 'Europe/Paris' })).id;
  const result = await tally.recordEvents([
    // this period (the last 30 days): 6 events
    { accountId, occurredAt: daysAgo(3, 10), eventType: 'llm_call', provider: 'openai', model: 'gpt-4o', tokensIn: 1000, tokensOut: 200, costUsd: '1.25', latencyMs: 120 },
    { accountId, occurredAt: daysAgo(3, 11), eventType: 'llm_call', provider: 'anthropic', model: 'claude-sonnet-4', tokensIn: 400, tokensOut: 100, cached: true, costUsd: '0', potentialCostUsd: '0.75' },
    { accountId, occurredAt: daysAgo(2, 9), eventType: 'api_call', endpoint: '/v1/search', statusCode: 200, latencyMs: 40 },
    { accountId, occurredAt: daysAgo(2, 10), eventType: 'api_call', endpoint: '/v1/search', statusCode: 503, success: false, latencyMs: 900 },
    { accountId, occurredAt: daysAgo(1, 8), eventType: 'api_call', endpoint: '/v1/items', statusCode: 200, latencyMs: 15 },
    { accountId, occurredAt: daysAgo(1, 9), eventType: 'file_upload', fileType: 'application/pdf', files: 1, bytes: 1_572_864 },
    // the 30 days before: 3 events
    { accountId, occurredAt: daysAgo(40, 12), eventType: 'api_call', endpoint: '/v1/search', statusCode: 200 },
    { accountId, occurredAt: daysAgo(45, 12), eventType: 'llm_call', provider: 'openai', model: 'gpt-4o', tokensIn: 10, tokensOut: 10, costUsd: '0.5' },
    { accountId, occurredAt: daysAgo(50, 12), eventType: 'api_call', endpoint: '/v1/items', statusCode: 200 },
    // Paris: 23:30 UTC three days ago is 00:30 (or 01:30) two days ago in Paris
    { accountId: parisId, occurredAt: daysAgo(3, 23.5), eventType: 'api_call', endpoint: '/v1/paris' },
  ]);
  expect(result).toMatchObject({ accepted: 10, rejected: [] });
  // fold some of it: the report reads the rollups plus the tail
  await tally.runRollups({ maxEvents: 4 });
});

afterAll(async () => {
  await tally?.close();
  await db?.drop();
});

describe('tally report', () => {
  it('prints the chart, the totals with the change, the four breakdowns and the month', async () => {
    const result = await runCli(['report', '--account', accountId], env);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const out = result.stdout;
    expect(out).toContain(`Reported · ${accountId} · UTC`);
    expect(out).toContain(`${isoDay(29)} to ${isoDay(0)} (local days) · 30 day(s)`);
    expect(out).toMatch(/Requests per day\n[\s\S]*[┤┼][\s\S]*\n\s+\d{4}-\d{2}-\d{2}\s+\d{4}-\d{2}-\d{2}\n/);
    expect(out).toContain('Cost per day');
    expect(out).toMatch(/Totals \(30 day\(s\)\)\nMETRIC\s+THIS PERIOD\s+PREVIOUS\s+CHANGE\n/);
    expect(out).toMatch(/\nrequests\s+6\s+3\s+\+3 \(\+100\.00%\)\n/);
    expect(out).toMatch(/\ncost\s+\$1\.25\s+\$0\.50\s+\+\$0\.75 \(\+150\.00%\)\n/);
    expect(out).toMatch(/\ncache hit rate\s+16\.67%\s+0\.00%\s+\+16\.67 pts\n/);
    expect(out).toMatch(/\nbytes\s+1\.5 MiB\s+0 B\s+\+1\.5 MiB\n/);
    expect(out).toMatch(/previous: the 30 day\(s\) before, /);
    expect(out).toMatch(/Providers \(share of requests\)\nPROVIDER\s+REQUESTS\s+SHARE\s+TOKENS\s+COST\n\(none\)\s+4\s+66\.6[67]%/);
    // 4, 1 and 1 of 6: the shares add up to 100.00, so one of the three thirds is rounded down
    expect(out).toMatch(/\nopenai\s+1\s+16\.6[67]%\s+1,200\s+\$1\.25\n/);
    expect(out).toMatch(/Models \(share of requests\)\nMODEL\s+/);
    expect(out).toMatch(/Endpoints \(share of requests\)\nENDPOINT\s+REQUESTS\s+SHARE\s+FAILED\s+AVG MS\s+P95 MS\n/);
    expect(out).toMatch(/\n\/v1\/search\s+2\s+33\.33%\s+1\s+470(\.00)?\s+/);
    expect(out).toMatch(/File types \(share of requests\)\nFILE TYPE\s+REQUESTS\s+SHARE\s+FILES\s+BYTES\n/);
    expect(out).toMatch(/\napplication\/pdf\s+1\s+16\.67%\s+1\s+1\.5 MiB\n/);
    expect(out).toMatch(/Month \d{4}-\d{2} \(\d+(\.\d+)?% elapsed\)\n\s+REQUESTS\s+COST\nso far\s+[\d,]+\s+\$[\d,.]+\nforecast\s+[\d,]+\s+\$[\d,.]+\n/);
  });

  it('--json: the same report as one object, money as decimal strings', async () => {
    const result = await runCli(['report', '--account', accountId, '--json'], env);
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(Object.keys(report)).toEqual(['account', 'range', 'series', 'totals', 'breakdowns', 'month']);
    expect(report.account).toEqual({ id: accountId, name: 'Reported', timezone: 'UTC' });
    expect(report.range).toMatchObject({ fromDate: isoDay(29), toDate: isoDay(0), granularity: 'day', buckets: 30, from: daysAgo(29).toISOString() });
    expect(report.series).toHaveLength(30);
    expect(report.series[0]).toMatchObject({ localDate: isoDay(29), bucketStart: daysAgo(29).toISOString(), requests: 0 });
    const { current, previous, change, previousUnavailable } = report.totals;
    expect(current).toMatchObject({ buckets: 30, requests: 6, failed: 1, cached: 1, files: 1, bytes: 1_572_864, tokensTotal: 1700, cacheHitPct: '16.67' });
    expect(canonical(current.costUsd)).toBe('1.25');
    expect(canonical(current.savingsUsd)).toBe('0.75');
    expect(previous).toMatchObject({ buckets: 30, requests: 3, from: daysAgo(59).toISOString(), to: daysAgo(29).toISOString() });
    expect(change.requests).toEqual({ change: 3, changePct: '100.00' });
    expect(canonical(change.costUsd.change)).toBe('0.75');
    expect(change.costUsd.changePct).toBe('150.00');
    expect(change.cacheHitPct).toEqual({ change: '16.67', changePct: null });
    expect(previousUnavailable).toBeNull();
    expect(Object.keys(report.breakdowns)).toEqual(['provider', 'model', 'endpoint', 'fileType']);
    expect(report.breakdowns.endpoint.map((r: { label: string; requests: number }) => [r.label, r.requests])).toEqual([
      ['(none)', 3],
      ['/v1/search', 2],
      ['/v1/items', 1],
    ]);
    expect(report.breakdowns.endpoint.map((r: { sharePct: string }) => r.sharePct)).toEqual(['50.00', '33.33', '16.67']);
    expect(report.breakdowns.fileType).toMatchObject([
      { value: null, label: '(none)', requests: 5, sharePct: '83.33' },
      { value: 'application/pdf', requests: 1, sharePct: '16.67', files: 1, bytes: 1_572_864 },
    ]);
    expect(report.month).toMatchObject({ forecastMethod: 'month_to_date_run_rate', month: expect.stringMatching(/^\d{4}-\d{2}-01$/) });
    expect(report.month.forecastCostUsd).toMatch(/^\d+\.\d+$/);
  });

  it("--from/--to are the account's local days, both included; week and hour buckets", async () => {
    const paris = JSON.parse((await runCli(['report', '--account', parisId, '--from', isoDay(2), '--to', isoDay(2), '--json'], env)).stdout);
    expect(paris.range).toMatchObject({ fromDate: isoDay(2), toDate: isoDay(2), buckets: 1 });
    expect(paris.totals.current.requests).toBe(1);
    expect(new Date(paris.range.from).getTime()).toBeLessThan(daysAgo(2).getTime()); // Paris midnight is before UTC's
    expect(paris.breakdowns.endpoint).toMatchObject([{ value: '/v1/paris', requests: 1, sharePct: '100.00' }]);

    const weeks = JSON.parse((await runCli(['report', '--account', accountId, '--from', isoDay(13), '--to', isoDay(0), '--granularity', 'week', '--json'], env)).stdout);
    expect(weeks.range.granularity).toBe('week');
    expect(weeks.series.length).toBeGreaterThanOrEqual(2);
    for (const w of weeks.series) expect(new Date(`${w.localDate}T00:00:00Z`).getUTCDay()).toBe(1); // ISO weeks start on Monday
    expect(weeks.totals.current.requests).toBe(6);

    const hours = await runCli(['report', '--account', accountId, '--days', '2', '--granularity', 'hour'], env);
    expect(hours.code).toBe(0);
    expect(hours.stdout).toContain('Requests per hour');
    expect(hours.stdout).toMatch(/Totals \(\d+ hour\(s\)\)/);
    const instants = JSON.parse(
      (await runCli(['report', '--account', accountId, '--from', daysAgo(2, 9).toISOString(), '--to', daysAgo(2, 10).toISOString(), '--granularity', 'hour', '--json'], env)).stdout,
    );
    expect(instants.series.map((b: { requests: number }) => b.requests)).toEqual([1]);
    expect(instants.totals.previous.requests).toBe(0);
  });

  it('bad usage is exit 2 with one line naming the option; an unknown account is exit 1 with its code', async () => {
    const cases: [string[], string][] = [
      [['report'], "error: required option '--account <id>' not specified"],
      [['report', '--account', 'acme'], 'error: --account: must be a UUID'],
      [['report', '--account', accountId, '--days', '0'], 'error: --days: must be at least 1'],
      [['report', '--account', accountId, '--days', 'ten'], 'error: --days: must be a whole number of days'],
      [['report', '--account', accountId, '--granularity', 'minute'], 'error: --granularity: must be one of "hour", "day", "week", "month"'],
      [['report', '--account', accountId, '--from', 'yesterday'], "error: --from: must be a date YYYY-MM-DD (the account's local day) or an ISO 8601 time with an offset"],
      [['report', '--account', accountId, '--from', '2026-02-30'], 'error: --from: 2026-02-30 is not a day of the calendar'],
      [['report', '--account', accountId, '--days', '7', '--from', isoDay(3)], 'error: --days: takes no --from or --to: give either a number of days or a range'],
      [['report', '--account', accountId, '--to', isoDay(3)], 'error: --to: needs --from'],
      [['report', '--account', accountId, '--from', isoDay(1), '--to', isoDay(3)], 'error: --from: must not be after --to (both days are included)'],
      [['report', '--account', accountId, '--from', daysAgo(-2).toISOString().slice(0, 10)], "error: --from: must be in the past (the account's today is " + isoDay(0) + ')'],
    ];
    for (const [args, message] of cases) {
      const result = await runCli(args, env);
      expect(result.stderr.trim(), args.join(' ')).toBe(message);
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stdout).toBe('');
    }
    const json = await runCli(['report', '--account', accountId, '--days', '0', '--json'], env);
    expect(JSON.parse(json.stderr)).toEqual({ error: { code: 'invalid_usage', message: '--days: must be at least 1' } });

    const unknown = await runCli(['report', '--account', '00000000-0000-4000-8000-000000000000'], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^error \[account_not_found\]: /);
    // hourly buckets over more than 31 days: the SQL's own limit, named
    const long = await runCli(['report', '--account', accountId, '--days', '40', '--granularity', 'hour', '--json'], env);
    expect(long.code).toBe(1);
    expect(JSON.parse(long.stderr).error.code).toBe('invalid_parameter');
  });
});
