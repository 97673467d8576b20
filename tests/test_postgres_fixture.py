"""The PostgreSQL launcher (tests/support/postgres.py) and its pytest fixtures.

Run: .venv/bin/pytest tests/test_postgres_fixture.py -q
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.postgres import PostgresServer, pid_alive

# Loads the `postgres` fixtures even before tests/conftest.py registers the plugin (a duplicate
# registration is ignored). `-p tests.support.pytest_postgres` on the command line only works when
# /work/main is on sys.path at startup (`python -m pytest` or PYTHONPATH=.): pytest imports -p plugins
# before conftest.py puts the rootdir on sys.path.
pytest_plugins = ["tests.support.pytest_postgres"]

ROOT = Path(__file__).resolve().parents[1]


async def _query(url: str, *statements: str) -> list[list[tuple]]:
    """Run statements in one transaction on a new engine; the rows of each."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            results = []
            for sql in statements:
                result = await conn.execute(text(sql))
                results.append([tuple(row) for row in result] if result.returns_rows else [])
            return results
    finally:
        await engine.dispose()


def query(url: str, *statements: str) -> list[list[tuple]]:
    return asyncio.run(_query(url, *statements))


def server_pids(server: PostgresServer) -> set[int]:
    """The postmaster and its children (whose command lines no longer name the data dir)."""
    pid = server.postmaster_pid()
    assert pid is not None
    master = psutil.Process(pid)
    return {pid, *(child.pid for child in master.children(recursive=True))}


def processes_naming(path: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if any(str(path) in arg for arg in proc.info["cmdline"] or []):
            found.append(proc)
    return found


def test_session_server_creates_database_and_answers_sqlalchemy(postgres: PostgresServer) -> None:
    url = postgres.create_database("fixture_smoke")
    assert url == postgres.url("fixture_smoke")
    assert url.startswith("postgresql+asyncpg://postgres:")
    assert url.endswith(f"@127.0.0.1:{postgres.port}/fixture_smoke")
    results = query(
        url,
        "SELECT current_setting('server_version_num')::int, current_database()",
        "CREATE TABLE t (id int PRIMARY KEY, name text)",
        "INSERT INTO t VALUES (1, 'one'), (2, 'two')",
        "SELECT name FROM t ORDER BY id",
    )
    version, rows = results[0], results[3]
    assert version[0][0] >= 130000 and version[0][1] == "fixture_smoke"
    assert rows == [("one",), ("two",)]


def test_postgres_url_fixture_gives_an_empty_private_database(postgres_url: str) -> None:
    [[(database, tables)]] = query(
        postgres_url,
        "SELECT current_database(), (SELECT count(*) FROM pg_tables WHERE schemaname = 'public')",
    )
    assert database.startswith("db_") and tables == 0


def test_loopback_only_password_required_and_settings(postgres: PostgresServer) -> None:
    settings = dict(
        line.split("|", 1)
        for line in postgres.psql(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('listen_addresses', 'max_connections', 'shared_buffers', 'fsync', 'password_encryption')"
        ).splitlines()
    )
    assert settings == {
        "listen_addresses": "127.0.0.1", "max_connections": "200", "shared_buffers": "4096",  # 8kB pages
        "fsync": "on", "password_encryption": "scram-sha-256",
    }
    # The URL works from another process (no peer/trust auth involved)...
    child = subprocess.run(
        [sys.executable, "-c", "import asyncio, asyncpg, sys\n"
         "async def main():\n"
         "    conn = await asyncpg.connect(sys.argv[1]); print(await conn.fetchval('SELECT 41 + 1')); await conn.close()\n"
         "asyncio.run(main())", postgres.dsn()],
        capture_output=True, text=True, timeout=30,
    )
    assert child.stdout.strip() == "42", child.stderr
    # ...and a wrong password is refused.
    wrong = postgres.url().replace(postgres.password, "not-the-password")
    with pytest.raises(Exception, match="password authentication failed"):
        query(wrong, "SELECT 1")


def test_restart_keeps_data_and_port_then_stop_leaves_nothing(tmp_path: Path) -> None:
    with PostgresServer(tmp_path / "pg") as pg:
        root, port = pg.root, pg.port
        assert root is not None and root.stat().st_mode & 0o777 == 0o755
        url = pg.create_database("durable")
        query(url, "CREATE TABLE kv (k text PRIMARY KEY, v text)", "INSERT INTO kv VALUES ('a', '1')")
        before = server_pids(pg)

        pg.restart()
        assert (pg.root, pg.port) == (root, port)
        assert not any(pid_alive(pid) for pid in before), "old server processes survived the restart"
        assert query(url, "INSERT INTO kv VALUES ('b', '2')", "SELECT k, v FROM kv ORDER BY k")[1] == [
            ("a", "1"), ("b", "2")]

        # A crash (immediate stop, no shutdown checkpoint): committed rows survive WAL recovery.
        pg.restart(mode="immediate")
        assert query(url, "SELECT count(*) FROM kv") == [[(2,)]]
        assert "database system was interrupted" in pg.log_tail(200) or "redo" in pg.log_tail(200)

        pids = server_pids(pg)
        data_dir = pg.data_dir
        assert processes_naming(data_dir), "the postmaster's command line should name its data dir"
    # __exit__ -> stop(): processes gone, scratch dir deleted, port closed, log kept in base_dir.
    assert not any(pid_alive(pid) for pid in pids)
    assert processes_naming(data_dir) == []
    assert not root.exists() and pg.root is None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert "database system is shut down" in pg.log_path.read_text()
    pg.stop()  # idempotent


def test_stop_keep_data_then_start_again(tmp_path: Path) -> None:
    pg = PostgresServer(tmp_path / "pg").start()
    try:
        url = pg.create_database("kept")
        query(url, "CREATE TABLE t (x int)", "INSERT INTO t VALUES (7)")
        pg.stop(keep_data=True)
        assert not pg.is_running() and pg.data_dir.exists()
        pg.start()
        assert query(url, "SELECT x FROM t") == [[(7,)]]
    finally:
        pg.stop()
    assert pg.root is None


def test_fixture_fails_not_skips_without_postgres(tmp_path: Path) -> None:
    (tmp_path / "test_needs_pg.py").write_text("def test_it(postgres):\n    pass\n")
    env = {**os.environ, "REGISTRY_TEST_PG_BINDIR": str(tmp_path / "no-such-bindir"),
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.support.pytest_postgres", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), str(tmp_path / "test_needs_pg.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 error" in proc.stdout and "skipped" not in proc.stdout, proc.stdout
    assert "PostgreSQL is required" in proc.stdout and "scripts/system-deps postgresql" in proc.stdout
