/**
 * Numbers for people: counts with thousands separators, money rounded to cents, and the
 * exact decimal arithmetic behind them (sums and percentages of decimal text, on bigints,
 * never through a float).
 */

/** 12345 → '12,345'. */
export const int = (n: number): string => n.toLocaleString('en-US');

/** The decimal text `text` as an integer number of 10^-scale units (digits past `scale` dropped). */
export function toUnits(text: string, scale = 12): bigint {
  const negative = text.startsWith('-');
  const [whole = '0', frac = ''] = (negative ? text.slice(1) : text).split('.');
  const units = BigInt((whole || '0') + frac.padEnd(scale, '0').slice(0, scale));
  return negative ? -units : units;
}

/** An integer number of 10^-scale units as decimal text with exactly `scale` decimals. */
export function fromUnits(units: bigint, scale = 12): string {
  const negative = units < 0n;
  const digits = (negative ? -units : units).toString().padStart(scale + 1, '0');
  const text = scale === 0 ? digits : `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  return negative ? `-${text}` : text;
}

/** n / d rounded half away from zero. */
function divRound(n: bigint, d: bigint): bigint {
  const negative = n < 0n !== d < 0n;
  const an = n < 0n ? -n : n;
  const ad = d < 0n ? -d : d;
  const q = (2n * an + ad) / (2n * ad);
  return negative ? -q : q;
}

/** The exact sum of decimal texts, with 12 decimals (the scale money is stored with). */
export const sumDecimals = (values: readonly string[]): string => fromUnits(values.reduce((acc, v) => acc + toUnits(v), 0n));

/** 100 × part / whole with 2 decimals (rounded half away from zero), or null when whole is 0. */
export function percentOf(part: bigint, whole: bigint): string | null {
  if (whole === 0n) return null;
  return fromUnits(divRound(part * 10_000n, whole), 2);
}

/** Decimal text rounded to cents with thousands separators: '1234.565' → '1,234.57', '-0.004' → '0.00'. */
export function cents(text: string): string {
  const units = divRound(toUnits(text, 3), 10n);
  const negative = units < 0n;
  const s = (negative ? -units : units).toString().padStart(3, '0');
  const shown = `${BigInt(s.slice(0, -2)).toLocaleString('en-US')}.${s.slice(-2)}`;
  return negative ? `-${shown}` : shown;
}

/** Money: '$1,234.57', '-$0.25'. */
export function usd(text: string): string {
  const c = cents(text);
  return c.startsWith('-') ? `-$${c.slice(1)}` : `$${c}`;
}

/** Bytes in binary units: 512 B, 1.5 KiB, 12.0 MiB. */
export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = n;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** A signed change for a table: '+1,234', '-5', '0'. */
export const signed = (text: string): string => (text.startsWith('-') || /^0(\.0*)?$/.test(text) ? text : `+${text}`);
