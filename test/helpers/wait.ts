/**
 * The one way a test waits for something another process or connection does: `eventually`
 * retries `check` until it returns without throwing. The deadline only bounds a hang;
 * nothing waited for this way is a timing assertion. On a timeout the last error `check`
 * threw is the test's failure, so make it say what was missing.
 */
import { vi } from 'vitest';

/** How long a wait may hang before the test fails. */
export const HANG_MS = 60_000;

export function eventually<T>(check: () => T | Promise<T>, options: { timeoutMs?: number; intervalMs?: number } = {}): Promise<T> {
  return vi.waitFor(check, { timeout: options.timeoutMs ?? HANG_MS, interval: options.intervalMs ?? 20 });
}
