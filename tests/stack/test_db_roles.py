"""Least privilege at the database: the components (stack_env, what jobs, ingest and the alerter get) connect as
the application role, which reads and writes rows and can change nothing else; the owner migrates."""

from __future__ import annotations

import pytest
from psycopg import errors

import migrate
from tests.conftest import connect


def test_components_connect_as_a_role_that_is_not_the_owner(stack_settings, stack_env, owner_env, test_db):
    assert stack_env["POSTGRES_USER"] == stack_settings.app_user != owner_env["POSTGRES_USER"]
    assert "SPARKTRENDS_APP_PASSWORD" not in stack_settings.client_env(), "components never get role passwords"
    with connect(owner_env, test_db) as conn:
        attributes = conn.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls FROM pg_roles "
            "WHERE rolname = %s",
            (stack_settings.app_user,),
        ).fetchone()
    assert attributes == (False, False, False, False, False)


def test_the_application_role_writes_rows(stack_env, test_db):
    with connect(stack_env, test_db) as conn:
        conn.execute(
            "INSERT INTO bars_1m (symbol, ts, open, high, low, close, volume, source, origin) "
            "VALUES ('ROLE', now(), 1, 1, 1, 1, 0, 'test', 'trades')"
        )
        conn.execute("UPDATE bars_1m SET close = 2 WHERE symbol = 'ROLE'")
        assert conn.execute("DELETE FROM bars_1m WHERE symbol = 'ROLE'").rowcount == 1
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] >= 7
        conn.rollback()


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE intruder (x int)",
        "DROP TABLE bars_1m",
        "ALTER TABLE bars_1m ADD COLUMN intruder int",
        "TRUNCATE bars_1m",
        "DELETE FROM schema_migrations",
        "CREATE ROLE intruder",
        "CREATE DATABASE intruder",
        "COPY bars_1m TO '/tmp/bars.csv'",
    ],
)
def test_the_application_role_changes_nothing_but_rows(stack_env, test_db, statement):
    with connect(stack_env, test_db) as conn:
        conn.autocommit = statement.startswith("CREATE DATABASE")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(statement)


def test_migrating_again_keeps_the_role_and_covers_new_tables(owner_env, stack_env, test_db, monkeypatch):
    for name, value in owner_env.items():
        monkeypatch.setenv(name, value)
    with connect(owner_env, test_db) as conn:
        conn.execute("CREATE TABLE role_test_new (x int)")
        conn.commit()
    try:
        assert migrate.grant_application_role(test_db) == stack_env["POSTGRES_USER"]
        with connect(stack_env, test_db) as conn:  # the password still works, the new table is covered
            conn.execute("INSERT INTO role_test_new VALUES (1)")
            conn.rollback()
    finally:
        with connect(owner_env, test_db) as conn:
            conn.execute("DROP TABLE role_test_new")
            conn.commit()
