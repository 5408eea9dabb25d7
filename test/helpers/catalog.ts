/**
 * A comparable dump of everything Tally owns in the catalog: schema tally's tables,
 * columns, constraints, indexes, functions, policies, grants, comments and the auth shim.
 */
import type pg from 'pg';

const DUMP = `
with tally_rels as (
  select c.oid, c.relname, c.relkind, c.relrowsecurity, c.relforcerowsecurity, c.relacl::text as acl,
         obj_description(c.oid, 'pg_class') as comment
  from pg_class c where c.relnamespace = 'tally'::regnamespace
)
select jsonb_build_object(
  'relations', (select jsonb_agg(to_jsonb(r) - 'oid' order by relname) from tally_rels r),
  'columns', (select jsonb_agg(jsonb_build_array(r.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                                                 pg_get_expr(d.adbin, d.adrelid), a.attidentity, col_description(r.oid, a.attnum))
                               order by r.relname, a.attnum)
              from tally_rels r join pg_attribute a on a.attrelid = r.oid and a.attnum > 0 and not a.attisdropped
              left join pg_attrdef d on d.adrelid = r.oid and d.adnum = a.attnum),
  'constraints', (select jsonb_agg(jsonb_build_array(r.relname, co.conname, pg_get_constraintdef(co.oid)) order by r.relname, co.conname)
                  from tally_rels r join pg_constraint co on co.conrelid = r.oid),
  'indexes', (select jsonb_agg(jsonb_build_array(indexname, indexdef) order by indexname) from pg_indexes where schemaname = 'tally'),
  'functions', (select jsonb_agg(jsonb_build_array(p.oid::regprocedure::text,
                                                   case when p.prokind = 'a'
                                                        then format('aggregate sfunc %s stype %s', ag.aggtransfn::regproc, ag.aggtranstype::regtype)
                                                        else pg_get_functiondef(p.oid) end,
                                                   p.proacl::text, obj_description(p.oid, 'pg_proc')) order by p.oid::regprocedure::text)
                from pg_proc p left join pg_aggregate ag on ag.aggfnoid = p.oid
                where p.pronamespace in ('tally'::regnamespace, 'auth'::regnamespace)),
  'policies', (select jsonb_agg(to_jsonb(p) order by tablename, policyname) from pg_policies p where schemaname = 'tally'),
  'triggers', (select jsonb_agg(jsonb_build_array(tgrelid::regclass::text, tgname, pg_get_triggerdef(oid)) order by 1, 2)
               from pg_trigger where not tgisinternal and tgrelid in (select oid from tally_rels)),
  'schema', (select jsonb_build_array(nspacl::text, obj_description(oid, 'pg_namespace')) from pg_namespace where nspname = 'tally'),
  'default_acl', (select jsonb_agg(jsonb_build_array(defaclobjtype, defaclacl::text) order by defaclobjtype)
                  from pg_default_acl where defaclnamespace = 'tally'::regnamespace),
  'migrations', (select jsonb_agg(jsonb_build_array(id, name, hash) order by id) from tally.migrations)
) as dump`;

export async function dumpCatalog(pool: pg.Pool): Promise<unknown> {
  const { rows } = await pool.query(DUMP);
  return rows[0].dump;
}
