/** Meters on the app's own tables: tally.attach_meter and tally.detach_meter. */
import { z } from 'zod';
import { callValue, parseInput, type Queryable } from './sql.ts';
import { EVENT_FIELDS } from './events.ts';

/** Event field (camelCase or snake_case) → a column of the table, or a constant `{ value }`. */
export type MeterMapping = Record<string, string | { value: unknown }>;

const SNAKE_TO_CAMEL = new Map<string, string>(Object.entries(EVENT_FIELDS).map(([camel, snake]) => [snake, camel]));

const mappingInput = z.record(z.string(), z.union([z.string(), z.strictObject({ value: z.unknown() })]));
const attachInput = z.tuple([z.string().min(1), z.string(), mappingInput]);

const attachResult = z
  .object({ table: z.string(), event_type: z.string(), mapping: z.record(z.string(), z.unknown()) })
  .transform((r) => ({
    table: r.table,
    eventType: r.event_type,
    mapping: Object.fromEntries(Object.entries(r.mapping).map(([k, v]) => [SNAKE_TO_CAMEL.get(k) ?? k, v])),
  }));
export type AttachedMeter = z.output<typeof attachResult>;

export function metersApi(q: Queryable) {
  return {
    /**
     * Meters inserts into `table` (a name as regclass reads it, e.g. 'public.uploads'):
     * each inserted row becomes an event of `eventType`, in the inserting transaction.
     * Field names may be camelCase; they are sent snake_case. Bad mappings raise
     * InvalidParameterError with code invalid_mapping.
     */
    async attachMeter(table: string, eventType: string, mapping: MeterMapping): Promise<AttachedMeter> {
      const [t, type, m] = parseInput('attachMeter', attachInput, [table, eventType, mapping]);
      const wire = Object.fromEntries(Object.entries(m).map(([k, v]) => [(EVENT_FIELDS as Record<string, string>)[k] ?? k, v]));
      return callValue(
        q,
        'attach_meter',
        [
          ['p_table', t, 'regclass'],
          ['p_event_type', type, 'text'],
          ['p_mapping', JSON.stringify(wire), 'jsonb'],
        ],
        attachResult,
      );
    },

    /** Stops metering `table`; false when it was not metered. */
    async detachMeter(table: string): Promise<boolean> {
      const t = parseInput('detachMeter', z.string().min(1), table);
      return callValue(q, 'detach_meter', [['p_table', t, 'regclass']], z.boolean());
    },
  };
}
