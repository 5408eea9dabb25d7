/** Operations: tally.ensure_partitions, purge_idempotency_keys and set_setting. */
import { z } from 'zod';
import { callRow, callValue, parseInput, type Queryable } from './sql.ts';
import { count, timestamp } from './schemas.ts';

const partitionsResult = z
  .object({ created: z.array(z.string()), moved_rows: count, default_rows: count, default_truncated: z.boolean().optional() })
  .transform((r) => ({
    created: r.created,
    movedRows: r.moved_rows,
    defaultRows: r.default_rows,
    /** The move left the default partition empty and it was truncated (no dead rows for reads to scan); false when the rollups' lock was busy. */
    defaultTruncated: r.default_truncated ?? false,
  }));
export type EnsurePartitionsResult = z.output<typeof partitionsResult>;

const purgeResult = z.object({ deleted: count, cutoff: timestamp });
export type PurgeResult = z.output<typeof purgeResult>;

const settingRow = z
  .object({
    name: z.string(),
    kind: z.enum(['integer', 'interval']),
    value: z.string(),
    default_value: z.string(),
    min_value: z.string(),
    max_value: z.string(),
    description: z.string(),
    updated_at: timestamp,
  })
  .transform((r) => ({
    name: r.name,
    kind: r.kind,
    value: r.value,
    defaultValue: r.default_value,
    minValue: r.min_value,
    maxValue: r.max_value,
    description: r.description,
    updatedAt: r.updated_at,
  }));
export type Setting = z.output<typeof settingRow>;

const partitionsInput = z.strictObject({ monthsAhead: z.number().int().optional() });
// Values are text in the settings table ('10000', '7 days'); a number is accepted for integer settings.
const setSettingInput = z.strictObject({ name: z.string(), value: z.union([z.string(), z.number().int()]).nullable() });

export function maintenanceApi(q: Queryable) {
  return {
    /** Creates this month's and the next months' events partitions (and any that events_default needs). Idempotent. */
    async ensurePartitions(input: { monthsAhead?: number } = {}): Promise<EnsurePartitionsResult> {
      const p = parseInput('ensurePartitions', partitionsInput, input);
      return callValue(q, 'ensure_partitions', [['p_months_ahead', p.monthsAhead, 'integer']], partitionsResult);
    },

    /** Forgets idempotency keys older than the setting ingest.idempotency_retention. */
    async purgeIdempotencyKeys(): Promise<PurgeResult> {
      return callValue(q, 'purge_idempotency_keys', [], purgeResult);
    },

    /** Sets a setting (null restores its default) and returns the row. */
    async setSetting(input: { name: string; value: string | number | null }): Promise<Setting> {
      const p = parseInput('setSetting', setSettingInput, input);
      return callRow(
        q,
        'set_setting',
        [
          ['p_name', p.name, 'text'],
          // null is a real argument here (restore the default), so it is sent, not left out
          ['p_value', p.value === null ? null : String(p.value), 'text'],
        ],
        settingRow,
      );
    },
  };
}
