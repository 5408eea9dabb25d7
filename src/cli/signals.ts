/**
 * SIGINT/SIGTERM handling for long commands: the first signal asks the work to stop
 * cleanly, a second one exits at once.
 */
import { log } from './context.ts';

/** Resolves on the first SIGINT/SIGTERM; a second one exits at once. */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      const force = () => {
        log('second signal: exiting without waiting');
        process.exit(130);
      };
      process.once('SIGINT', force);
      process.once('SIGTERM', force);
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

/**
 * Runs `fn` with an AbortSignal that the first SIGINT/SIGTERM aborts (after `onFirst`);
 * a second signal exits with `exitCode` at once. The handlers are removed afterwards.
 */
export async function withStopSignal<T>(fn: (signal: AbortSignal) => Promise<T>, options: { onFirst?: () => void; exitCode?: number } = {}): Promise<T> {
  const stop = new AbortController();
  const onSignal = () => {
    if (stop.signal.aborted) process.exit(options.exitCode ?? 1);
    options.onFirst?.();
    stop.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await fn(stop.signal);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
