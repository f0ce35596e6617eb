"""Apply db/migrations/*.sql in order, once each, recording them in schema_migrations.

Used by the local stack (scripts/stack.py up) and by the compose `migrate` step, so both
databases get the same schema the same way. Connection settings come from the environment
(POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB), as the owner; with
SPARKTRENDS_APP_USER and SPARKTRENDS_APP_PASSWORD it also keeps the components' least-privilege role.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import psycopg
from psycopg import sql

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "db" / "migrations"


def conninfo(dbname: str | None = None) -> str:
    """A libpq conninfo built from the environment; the password stays out of it (libpq reads PGPASSWORD)."""
    host = os.environ.get("POSTGRES_HOST", "127.0.0.1")
    port = os.environ.get("POSTGRES_PORT", "5432")
    user = os.environ.get("POSTGRES_USER", "sparktrends")
    db = dbname or os.environ.get("POSTGRES_DB", "sparktrends")
    return f"host={host} port={port} user={user} dbname={db} connect_timeout=5"


def connect(dbname: str | None = None, autocommit: bool = False) -> psycopg.Connection:
    return psycopg.connect(conninfo(dbname), password=os.environ.get("POSTGRES_PASSWORD"), autocommit=autocommit)


def ensure_database(dbname: str) -> bool:
    """Create `dbname` if it does not exist; True when it was created."""
    with connect("postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        return True


def pending_migrations(conn: psycopg.Connection) -> list[Path]:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    applied = {row[0]: row[1] for row in conn.execute("SELECT version, checksum FROM schema_migrations")}
    pending = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        checksum = hashlib.sha256(path.read_bytes()).hexdigest()
        if path.stem in applied:
            if applied[path.stem] != checksum:
                raise RuntimeError(
                    f"migration {path.name} was edited after it was applied; add a new migration instead"
                )
            continue
        pending.append(path)
    return pending


def migrate(dbname: str | None = None) -> list[str]:
    """Apply every pending migration in one transaction (all or none). Returns the versions applied."""
    applied = []
    with connect(dbname) as conn:
        # One migrator at a time: a second one waits here, then finds nothing pending.
        conn.execute("SELECT pg_advisory_xact_lock(7316203)")
        for path in pending_migrations(conn):
            conn.execute(path.read_text())
            conn.execute(
                "INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)",
                (path.stem, hashlib.sha256(path.read_bytes()).hexdigest()),
            )
            applied.append(path.stem)
        conn.commit()
    return applied


# What the application role may do: read and write rows of every table and use their sequences, in this
# database's public schema. No DDL, no TRUNCATE, no roles or databases, and schema_migrations only read: a
# leaked component credential cannot change the schema or touch another database.
APP_GRANTS = [
    "GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {role}",
    "GRANT USAGE ON SCHEMA public TO {role}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
    "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role}",
    "REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM {role}",
    # Tables the owner creates outside a migration (a test's scratch table) are the role's to fill, too.
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {role}",
    "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
]


def grant_application_role(dbname: str) -> str | None:
    """Creates (or updates the password of) the application role named by SPARKTRENDS_APP_USER, with
    SPARKTRENDS_APP_PASSWORD, and grants it APP_GRANTS on `dbname`. Run after every migration, so new tables
    are covered. Returns the role, or None when no separate role is configured (one role for everything)."""
    role, password = os.environ.get("SPARKTRENDS_APP_USER"), os.environ.get("SPARKTRENDS_APP_PASSWORD")
    if not role or role == os.environ.get("POSTGRES_USER", "sparktrends"):
        return None
    if not password:
        raise RuntimeError("SPARKTRENDS_APP_USER is set without SPARKTRENDS_APP_PASSWORD")
    with connect(dbname, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(7316203)")  # roles are cluster-wide: one grantor at a time
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        # DDL takes no bind parameters; the password is quoted client-side as a literal.
        conn.execute(
            sql.SQL(verb + " ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
        for grant in APP_GRANTS:
            conn.execute(sql.SQL(grant).format(db=sql.Identifier(dbname), role=sql.Identifier(role)))
        conn.execute("SELECT pg_advisory_unlock(7316203)")
    return role


def recreate_database(dbname: str, env: dict[str, str]) -> None:
    """Drop `dbname` and create it migrated like production, connecting with `env`'s settings (a test's or a
    benchmark's own database, never the pipeline's; the owner's, see scripts/stack.py owner_env)."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        with connect("postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        ensure_database(dbname)
        migrate(dbname)
        grant_application_role(dbname)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main() -> int:
    dbname = os.environ.get("POSTGRES_DB", "sparktrends")
    if ensure_database(dbname):
        print(f"migrate: created database {dbname}")
    applied = migrate(dbname)
    print(f"migrate: {dbname}: applied {', '.join(applied) if applied else 'nothing (up to date)'}")
    role = grant_application_role(dbname)
    print(
        f"migrate: {dbname}: application role {role} may read and write rows only"
        if role
        else "migrate: no separate application role (SPARKTRENDS_APP_USER unset): components connect as the owner"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
