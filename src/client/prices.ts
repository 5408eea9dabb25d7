/** Model prices: tally.set_model_price and tally.reprice. Prices are decimal strings end to end. */
import { z } from 'zod';
import { callRow, callValue, parseInput, type Queryable } from './sql.ts';
import { count, decimal, instantInput, moneyInput, moneyToText, rebuiltBuckets, timestamp } from './schemas.ts';

const priceRow = z
  .object({
    provider: z.string(),
    model: z.string(),
    effective_from: timestamp,
    input_usd_per_mtok: decimal,
    output_usd_per_mtok: decimal,
    created_at: timestamp,
  })
  .transform((r) => ({
    provider: r.provider,
    model: r.model,
    effectiveFrom: r.effective_from,
    inputUsdPerMtok: r.input_usd_per_mtok,
    outputUsdPerMtok: r.output_usd_per_mtok,
    createdAt: r.created_at,
  }));
export type ModelPrice = z.output<typeof priceRow>;

/** repriced: events whose cost changed; rebuiltBuckets: the aggregate buckets rebuilt with them, in the same transaction. */
const repriceResult = z
  .object({
    repriced: count,
    from: timestamp,
    to: timestamp,
    rebuilt_buckets: rebuiltBuckets,
  })
  .transform((r) => ({ repriced: r.repriced, from: r.from, to: r.to, rebuiltBuckets: r.rebuilt_buckets }));
export type RepriceResult = z.output<typeof repriceResult>;

const setPriceInput = z.strictObject({
  provider: z.string(),
  model: z.string(),
  inputUsdPerMtok: moneyInput,
  outputUsdPerMtok: moneyInput,
  effectiveFrom: instantInput.optional(),
});
const repriceInput = z.strictObject({ from: instantInput, to: instantInput });

export function pricesApi(q: Queryable) {
  return {
    /** Sets a model's price per million tokens from effectiveFrom (default now). Prices: decimal strings (or numbers). */
    async setModelPrice(input: z.input<typeof setPriceInput>): Promise<ModelPrice> {
      const p = parseInput('setModelPrice', setPriceInput, input);
      return callRow(
        q,
        'set_model_price',
        [
          ['p_provider', p.provider, 'text'],
          ['p_model', p.model, 'text'],
          ['p_input_usd_per_mtok', moneyToText(p.inputUsdPerMtok), 'numeric'],
          ['p_output_usd_per_mtok', moneyToText(p.outputUsdPerMtok), 'numeric'],
          ['p_effective_from', p.effectiveFrom, 'timestamptz'],
        ],
        priceRow,
      );
    },

    /**
     * Recomputes the costs Tally computed for events in [from, to) from the current price table, and rebuilds the rollup
     * buckets those events were counted in (same transaction), so aggregates and live views stay exact.
     */
    async reprice(input: z.input<typeof repriceInput>): Promise<RepriceResult> {
      const p = parseInput('reprice', repriceInput, input);
      return callValue(
        q,
        'reprice',
        [
          ['p_from', p.from, 'timestamptz'],
          ['p_to', p.to, 'timestamptz'],
        ],
        repriceResult,
      );
    },
  };
}
