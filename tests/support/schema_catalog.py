"""What PostgreSQL's catalog says about the ``public`` schema, as plain sorted data that two states can be
compared by: relations, columns, types, constraints, indexes, triggers, policies, functions, comments and
grants. Names and definitions only, never oids, so a schema rebuilt by a down-then-up compares equal to the
original exactly when it is the same schema.

Column positions are ranks among live columns, not ``attnum``: a column dropped and added again by a
round trip ends up after the same neighbours while its number moves on (dropped columns leave a hole).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pg8000.native

# Each query yields rows of text and booleans only; every aspect is sorted before it is compared.
_ACL = "(SELECT array_agg(a::text ORDER BY a::text) FROM unnest({acl}) AS a)::text"
ASPECTS: dict[str, str] = {
    "relations": f"""
        SELECT c.relname, c.relkind::text, c.relrowsecurity, c.relforcerowsecurity, c.relpersistence::text,
               pg_get_userbyid(c.relowner), {_ACL.format(acl="c.relacl")}, obj_description(c.oid, 'pg_class'),
               CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END
        FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace""",
    "columns": f"""
        SELECT c.relname, a.attname,
               rank() OVER (PARTITION BY c.oid ORDER BY a.attnum)::text,
               format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid),
               a.attidentity::text, a.attgenerated::text, coll.collname::text,
               col_description(c.oid, a.attnum), {_ACL.format(acl="a.attacl")}
        FROM pg_class c
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
        LEFT JOIN pg_collation coll ON coll.oid = a.attcollation AND a.attcollation <> 0
        WHERE c.relnamespace = 'public'::regnamespace""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, contype::text, pg_get_constraintdef(oid),
               condeferrable, condeferred, convalidated, obj_description(oid, 'pg_constraint')
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace""",
    "indexes": """
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), i.indisclustered, i.indisreplident
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE c.relnamespace = 'public'::regnamespace""",
    "triggers": """
        SELECT t.tgrelid::regclass::text, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled::text,
               obj_description(t.oid, 'pg_trigger')
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        WHERE NOT t.tgisinternal AND c.relnamespace = 'public'::regnamespace""",
    "policies": """
        SELECT p.tablename::text, p.policyname::text, p.permissive, p.roles::text, p.cmd, p.qual, p.with_check,
               obj_description(pol.oid, 'pg_policy')
        FROM pg_policies p
        JOIN pg_policy pol ON pol.polname = p.policyname AND pol.polrelid = format('%I', p.tablename)::regclass
        WHERE p.schemaname = 'public'""",
    "functions": f"""
        SELECT p.oid::regprocedure::text,
               CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) END,
               p.prokind::text, pg_get_userbyid(p.proowner), {_ACL.format(acl="p.proacl")},
               obj_description(p.oid, 'pg_proc')
        FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace""",
    "types": """
        SELECT t.typname, t.typtype::text, format_type(t.typbasetype, t.typtypmod), t.typnotnull,
               (SELECT array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid)::text,
               obj_description(t.oid, 'pg_type')
        FROM pg_type t
        LEFT JOIN pg_class c ON c.oid = t.typrelid
        WHERE t.typnamespace = 'public'::regnamespace AND t.typelem = 0 AND (c.oid IS NULL OR c.relkind = 'c')""",
    "sequences": """
        SELECT s.seqrelid::regclass::text, format_type(s.seqtypid, NULL), s.seqstart::text, s.seqincrement::text,
               s.seqmin::text, s.seqmax::text, s.seqcycle
        FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
        WHERE c.relnamespace = 'public'::regnamespace""",
    "schema": f"""
        SELECT n.nspname, pg_get_userbyid(n.nspowner), {_ACL.format(acl="n.nspacl")},
               obj_description(n.oid, 'pg_namespace')
        FROM pg_namespace n WHERE n.nspname = 'public'""",
    "default_privileges": f"""
        SELECT pg_get_userbyid(d.defaclrole), d.defaclobjtype::text, {_ACL.format(acl="d.defaclacl")}
        FROM pg_default_acl d WHERE d.defaclnamespace IN (0, 'public'::regnamespace)""",
    "extensions": "SELECT extname, extversion FROM pg_extension",
}

type Catalog = dict[str, list[tuple[object, ...]]]


def snapshot(connection: pg8000.native.Connection) -> Catalog:
    """The whole ``public`` schema as the catalog describes it, aspect by aspect, each sorted."""
    return {
        aspect: sorted((tuple(row) for row in connection.run(query)), key=repr) for aspect, query in ASPECTS.items()
    }


def differences(before: Catalog, after: Catalog) -> dict[str, dict[str, list[tuple[object, ...]]]]:
    """Per aspect, the rows only one side has: empty when the two schemas are the same."""
    found = {}
    for aspect in ASPECTS:
        gone = [row for row in before[aspect] if row not in after[aspect]]
        new = [row for row in after[aspect] if row not in before[aspect]]
        if gone or new:
            found[aspect] = {"only_before": gone, "only_after": new}
    return found
