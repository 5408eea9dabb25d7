/**
 * Installing the schema three ways, side by side: `tally migrate` on an empty database,
 * the `tally sql` script, and cloning an already-migrated template (what the test
 * harness does per test file). Lower is better; the ratio is to `tally migrate`.
 */
import pg from 'pg';
import { installScript, runMigrations } from '../../src/database/migrate.ts';
import { medianMs, withAdmin, type BenchSuite } from '../lib.ts';

const RUNS = 5;

export const suite: BenchSuite = {
  name: 'install',
  description: 'tally migrate vs tally sql vs CREATE DATABASE … TEMPLATE (median of 5, ms)',
  async run(ctx) {
    const script = await installScript();
    const template = await ctx.createDatabase();
    await runMigrations(template.url);

    const timeFresh = (install: (url: string) => Promise<void>) =>
      medianMs(RUNS, async (time) => {
        const db = await ctx.createDatabase();
        try {
          await time(() => install(db.url));
        } finally {
          await db.drop();
        }
      });

    const migrate = await timeFresh(async (url) => {
      await runMigrations(url);
    });
    const sql = await timeFresh(async (url) => {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await client.query(script);
      } finally {
        await client.end();
      }
    });
    const clone = await medianMs(RUNS, (time) =>
      time(() =>
        withAdmin(ctx.serverUrl, async (c) => {
          await c.query(`CREATE DATABASE ${template.name}_c TEMPLATE ${template.name}`);
          await c.query(`DROP DATABASE ${template.name}_c`);
        }),
      ),
    );
    await template.drop();

    return [
      { name: 'tally_migrate', value: Number(migrate.toFixed(1)), unit: 'ms' },
      { name: 'tally_sql_script', value: Number(sql.toFixed(1)), unit: 'ms', baseline: 'tally_migrate', better: 'lower' },
      {
        name: 'template_clone_and_drop',
        value: Number(clone.toFixed(1)),
        unit: 'ms',
        baseline: 'tally_migrate',
        better: 'lower',
        note: 'per test file, instead of migrating',
      },
    ];
  },
};
