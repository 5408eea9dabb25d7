/** src/cli/progress.ts, the one progress display of import, rollup and demo: its plain-line mode (stderr not a terminal). */
import { describe, expect, it } from 'vitest';
import { importProgressDisplay } from '../src/cli/import.ts';
import { progressDisplay } from '../src/cli/progress.ts';
import { rollupProgressDisplay } from '../src/cli/rollup.ts';
import type { ImportProgress } from '../src/ingest/import.ts';

function pipe(): { stream: NodeJS.WriteStream; text: () => string } {
  let out = '';
  const stream = { isTTY: false, write: (chunk: string) => ((out += chunk), true) } as unknown as NodeJS.WriteStream;
  return { stream, text: () => out };
}

describe('progress lines when stderr is not a terminal', () => {
  it('one line per interval on the given clock, none without a line', () => {
    const { stream, text } = pipe();
    const d = progressDisplay<number>({ stream, format: () => '{bar}', bar: (n) => ({ value: n, total: 100 }), line: (n) => `tally: at ${n}`, intervalMs: 1000, clock: (n) => n * 100 });
    for (let n = 0; n <= 30; n++) d.update(n);
    d.stop();
    // clock 0 is not yet an interval past the start; then 1000, 2000, 3000
    expect(text()).toBe('tally: at 10\ntally: at 20\ntally: at 30\n');
    const quiet = pipe();
    const none = progressDisplay<number>({ stream: quiet.stream, format: () => '{bar}', bar: (n) => ({ value: n, total: 1 }) });
    none.update(1);
    expect(quiet.text()).toBe('');
  });

  it('import and rollup keep their line texts', () => {
    const imp = pipe();
    const p: ImportProgress = { rows: 12345, accepted: 12000, duplicates: 300, conflicts: 0, rejected: 45, bytesRead: 2 * 2 ** 20, totalBytes: 4 * 2 ** 20, elapsedMs: 10_000 };
    const display = importProgressDisplay(imp.stream);
    display.update({ ...p, elapsedMs: 5_000 });
    display.update(p);
    expect(imp.text()).toBe('tally: import: 2.0 MB of 4.0 MB (50%) read, 12,345 rows (12,000 accepted, 300 duplicates, 45 rejected), 1,235 rows/s\n');

    const roll = pipe();
    const r = rollupProgressDisplay(roll.stream, 'folding');
    r.update({ done: 500, total: 1000, unit: 'events', elapsedMs: 2000, events: 500 });
    r.update({ done: 600, total: 1000, unit: 'events', elapsedMs: 2100, events: 600 });
    expect(roll.text()).toBe('tally: folding: 500 of 1000 events (250 events/s)\n');
  });
});
