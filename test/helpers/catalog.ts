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

/** Relation kinds, as pg_class.relkind, that the privilege rules cover (indexes hold no grants). */
export const RELATION_KINDS: Record<string, string> = {
  r: 'table',
  p: 'partitioned table',
  v: 'view',
  m: 'materialized view',
  S: 'sequence',
  f: 'foreign table',
};

/** Write privileges a service caller holds on purpose. Adding one here is a reviewed decision. */
export const SERVICE_WRITABLE = ['tally.job_schedules'];

/**
 * Every grant on a relation in `schemas` to PUBLIC or an API role that the privilege rules
 * forbid, as `relation (kind): role PRIVILEGE (why)`. Generic over relation kinds, so a new
 * table, partition, view, materialized view, sequence or foreign table is covered unedited:
 *   - PUBLIC and anon hold nothing on any relation;
 *   - no API role holds anything on a sequence (ids come from column defaults inside
 *     Tally's functions), a partition (reads go through the parent) or a foreign table;
 *   - no API role holds TRUNCATE, REFERENCES or TRIGGER (TRUNCATE ignores row-level security);
 *   - authenticated holds only SELECT, and only on a table with row-level security or a
 *     security_invoker view (a materialized view has no RLS, so never);
 *   - service_role writes only SERVICE_WRITABLE.
 */
export async function privilegeViolations(pool: pg.Pool, schemas: string[] = ['tally', 'auth']): Promise<string[]> {
  const { rows } = await pool.query<{ rel: string; kind: string; partition: boolean; rls: boolean; invoker: boolean; role: string; privilege: string }>(
    `
    with rels as (
      select c.oid, c.oid::regclass::text as rel, c.relkind::text as kind, c.relispartition as partition, c.relrowsecurity as rls,
             coalesce('security_invoker=true' = any(c.reloptions) or 'security_invoker=on' = any(c.reloptions), false) as invoker,
             coalesce(c.relacl, acldefault(case when c.relkind = 'S' then 's' else 'r' end::"char", c.relowner)) as acl
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = any($1::text[]) and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
    )
    select r.rel, r.kind, r.partition, r.rls, r.invoker,
           case when a.grantee = 0 then 'PUBLIC' else a.grantee::regrole::text end as role, a.privilege_type as privilege
    from rels r cross join lateral aclexplode(r.acl) a
    where a.grantee = 0 or a.grantee in (select oid from pg_roles where rolname in ('anon', 'authenticated', 'service_role'))
    order by 1, 6, 7`,
    [schemas],
  );
  const violations: string[] = [];
  for (const g of rows) {
    const what = `${g.rel} (${RELATION_KINDS[g.kind] ?? g.kind}${g.partition ? ', partition' : ''}): ${g.role} ${g.privilege}`;
    const why =
      g.role === 'PUBLIC' || g.role === 'anon' ? 'PUBLIC and anon hold nothing'
      : g.kind === 'S' ? 'no API role holds a sequence'
      : g.partition ? 'partitions are read through their parent'
      : g.kind === 'f' ? 'no API role holds a foreign table'
      : ['TRUNCATE', 'REFERENCES', 'TRIGGER'].includes(g.privilege) ? `no API role holds ${g.privilege}`
      : g.role === 'authenticated' && g.privilege !== 'SELECT' ? 'authenticated only reads'
      : g.role === 'authenticated' && g.kind === 'm' ? 'a materialized view has no row-level security'
      : g.role === 'authenticated' && g.kind === 'v' && !g.invoker ? 'a view members read must be security_invoker'
      : g.role === 'authenticated' && (g.kind === 'r' || g.kind === 'p') && !g.rls ? 'a table members read must have row-level security'
      : g.role === 'service_role' && g.privilege !== 'SELECT' && !SERVICE_WRITABLE.includes(g.rel) ? 'service_role writes only SERVICE_WRITABLE'
      : undefined;
    if (why) violations.push(`${what} (${why})`);
  }
  return violations;
}
