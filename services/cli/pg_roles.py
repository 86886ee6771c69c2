"""PostgreSQL side of ``sp4n bootstrap``: the owner role, one role per service, their grants
(``shared.privileges`` says who may do what). Idempotent: every statement may run again.

Runs as a superuser (or a role with CREATEROLE that owns the database). Objects an earlier
``sp4n migrate`` created as another role (a superuser) are handed to the owner role, so the
owner's default privileges and later migrations apply to them too.
"""

from __future__ import annotations

import asyncpg

from shared.db import LEDGER_DDL
from shared.privileges import SERVICES, owner_role, service_role

DML = "SELECT, INSERT, UPDATE, DELETE"


async def _ident(conn: asyncpg.Connection, template: str, *args: str) -> str:
    """``template`` with ``%I``/``%L`` filled by the server's own ``format`` (no hand quoting)."""
    if not args:
        return template
    sql: str = await conn.fetchval("SELECT format($1, " + ", ".join(
        f"${i + 2}::text" for i in range(len(args))) + ")", template, *args)
    return sql


async def ensure_role(conn: asyncpg.Connection, role: str, password: str) -> str:
    """Create ``role`` (LOGIN, no special attributes) or reset it to that; sets the password.
    Returns ``created`` or ``updated``."""
    exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
    verb = "ALTER" if exists else "CREATE"
    await conn.execute(await _ident(
        conn, verb + " ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
        "NOBYPASSRLS INHERIT PASSWORD %L", role, password))
    return "updated" if exists else "created"


async def grant_all(conn: asyncpg.Connection, prefix: str, database: str) -> list[str]:
    """Every grant of the owner and service roles on ``database`` (idempotent); returns
    what it did, one line each."""
    owner = owner_role(prefix)
    done: list[str] = []

    async def run(template: str, *args: str) -> None:
        await conn.execute(await _ident(conn, template, *args))

    await run("REVOKE ALL ON DATABASE %I FROM PUBLIC", database)
    await run("GRANT CONNECT, CREATE ON DATABASE %I TO %I", database, owner)
    await run("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    done.append(f"database {database}: CONNECT for each role, CREATE (schemas) for {owner} only")
    for svc in SERVICES:
        role = service_role(prefix, svc)
        await run("GRANT CONNECT ON DATABASE %I TO %I", database, role)
        await run("CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I", svc, owner)
        await run("ALTER SCHEMA %I OWNER TO %I", svc, owner)
        moved = await _hand_to_owner(conn, svc, owner)
        await run("REVOKE ALL ON SCHEMA %I FROM PUBLIC", svc)
        await run("GRANT USAGE ON SCHEMA %I TO %I", svc, role)
        await run(f"GRANT {DML} ON ALL TABLES IN SCHEMA %I TO %I", svc, role)
        await run("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO %I", svc, role)
        await run(f"ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT {DML} ON TABLES TO %I",
                  owner, svc, role)
        await run("ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I "
                  "GRANT USAGE, SELECT ON SEQUENCES TO %I", owner, svc, role)
        # The migration ledger is the owner's: a service may read it, never rewrite it (made
        # here, as the owner, so that holds before the first migration too).
        async with conn.transaction():
            await run("SET LOCAL ROLE %I", owner)
            await run("SET LOCAL search_path TO %I", svc)
            await conn.execute(LEDGER_DDL)
        await run("REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON %I.schema_migrations FROM %I", svc, role)
        done.append(f"schema {svc}: owned by {owner}{f' ({moved} objects handed over)' if moved else ''}; "
                    f"{role}: USAGE + {DML} on its tables, USAGE on its sequences (now and later)")
    return done


async def _hand_to_owner(conn: asyncpg.Connection, schema: str, owner: str) -> int:
    """Give ``owner`` every table, view, sequence and function of ``schema`` it does not own."""
    rels = await conn.fetch(
        "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'S')"
        "   AND pg_get_userbyid(c.relowner) <> $2"
        "   AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid"
        "        AND d.deptype IN ('a', 'i')))",  # an owned sequence moves with its table
        schema, owner)
    for r in rels:
        kind = {"v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE"}.get(r["relkind"], "TABLE")
        await conn.execute(await _ident(conn, f"ALTER {kind} %I.%I OWNER TO %I",
                                        schema, r["relname"], owner))
    funcs = await conn.fetch(
        "SELECT p.oid::regprocedure::text AS sig FROM pg_proc p"
        " JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = $1 AND pg_get_userbyid(p.proowner) <> $2", schema, owner)
    for f in funcs:
        # regprocedure text is already a quoted, schema-qualified signature.
        await conn.execute(await _ident(conn, f"ALTER FUNCTION {f['sig']} OWNER TO %I", owner))
    return len(rels) + len(funcs)


async def drop_roles(conn: asyncpg.Connection, prefix: str) -> list[str]:
    """Drop the owner and service roles of ``prefix`` (tests: per-run roles). Objects they
    own or privileges they hold in the current database are dropped first; a role with
    objects in another database stays (PostgreSQL refuses) and the error says so."""
    dropped = []
    for role in (*(service_role(prefix, s) for s in SERVICES), owner_role(prefix)):
        if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
            continue
        await conn.execute(await _ident(conn, "DROP OWNED BY %I CASCADE", role))
        await conn.execute(await _ident(conn, "DROP ROLE %I", role))
        dropped.append(role)
    return dropped
