"""The JDBC options the executors get (spark_jobs/common.py jdbc_options): no password when a password file is
there for their JDBC driver to read (scripts/submit.sh hands them its path), the password option otherwise."""

from __future__ import annotations

from spark_jobs.common import jdbc_options


def test_with_a_password_file_the_password_travels_in_no_option(tmp_path, monkeypatch):
    passfile = tmp_path / "pgpass"
    passfile.write_text("127.0.0.1:55432:*:app:s3cret\n")
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    monkeypatch.setenv("POSTGRES_USER", "app")
    monkeypatch.setenv("POSTGRES_PASSWORD", "s3cret")
    options = jdbc_options()
    assert options["user"] == "app"
    assert "password" not in options and "s3cret" not in repr(options)


def test_without_one_the_password_is_an_option_never_part_of_the_url(tmp_path, monkeypatch):
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "absent"))
    monkeypatch.setenv("POSTGRES_PASSWORD", "s3cret")
    options = jdbc_options()
    assert options["password"] == "s3cret"
    assert "s3cret" not in options["url"]
