"""Apply db/migrations/*.sql in order, once each, recording them in schema_migrations.

Used by the local stack (scripts/stack.py up) and by the compose `migrate` step, so both
databases get the same schema the same way. Connection settings come from the environment
(POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB).
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


def recreate_database(dbname: str, env: dict[str, str]) -> None:
    """Drop `dbname` and create it migrated like production, connecting with `env`'s settings (a test's or a
    benchmark's own database, never the pipeline's)."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        with connect("postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        ensure_database(dbname)
        migrate(dbname)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main() -> int:
    dbname = os.environ.get("POSTGRES_DB", "sparktrends")
    if ensure_database(dbname):
        print(f"migrate: created database {dbname}")
    applied = migrate(dbname)
    print(f"migrate: {dbname}: applied {', '.join(applied) if applied else 'nothing (up to date)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
