/**
 * Progress on stderr, the one way every long command shows it: a cli-progress bar when the
 * stream is a terminal, otherwise one plain line every `intervalMs` (none when the command
 * gives no line). Used by `tally import`, `tally rollup` and `tally demo`.
 */
import cliProgress from 'cli-progress';

export interface ProgressDisplay<P> {
  update(progress: P): void;
  stop(): void;
}

export interface ProgressOptions<P> {
  stream: NodeJS.WriteStream;
  /** The bar's cli-progress format ({bar}, {value}, {total}, {percentage}, {eta_formatted} and the payload's keys), chosen at the first update. */
  format: (progress: P) => string;
  /** Where the bar stands: value of total, and the payload its format names. */
  bar: (progress: P) => { value: number; total: number; payload?: Record<string, unknown> };
  /** The line written when the stream is not a terminal (whole, `tally: …`); absent: no lines. */
  line?: (progress: P) => string;
  /** Lines are at least this far apart (default 10 s), on the `clock`. */
  intervalMs?: number;
  /** The clock of the interval (default Date.now: the first update writes a line; elapsed time: the first line comes after intervalMs). */
  clock?: (progress: P) => number;
}

export function progressDisplay<P>(o: ProgressOptions<P>): ProgressDisplay<P> {
  if (o.stream.isTTY) {
    let bar: cliProgress.SingleBar | undefined;
    return {
      update(p) {
        const { value, total, payload = {} } = o.bar(p);
        if (!bar) {
          bar = new cliProgress.SingleBar({ stream: o.stream, clearOnComplete: true, hideCursor: true, format: o.format(p) }, cliProgress.Presets.shades_classic);
          bar.start(total, 0, payload);
        }
        bar.setTotal(total);
        bar.update(value, payload);
      },
      stop: () => bar?.stop(),
    };
  }
  const line = o.line;
  if (!line) return { update: () => undefined, stop: () => undefined };
  const interval = o.intervalMs ?? 10_000;
  const clock = o.clock ?? (() => Date.now());
  let last = 0;
  return {
    update(p) {
      const now = clock(p);
      if (now - last < interval) return;
      last = now;
      o.stream.write(line(p) + '\n');
    },
    stop: () => undefined,
  };
}

/** No progress at all (`--no-progress`). */
export const noProgress: ProgressDisplay<unknown> = { update: () => undefined, stop: () => undefined };
