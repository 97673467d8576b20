"""Common start-up mistakes end in one line that says what and where, exit 1, and no traceback: the port is
taken, the data directory cannot be made, the database is unreachable or refuses the password. They used
to print 24 to 135 lines of traceback (configuration mistakes were already one line, exit 2)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.support.postgres import PostgresServer
from tests.support.server import free_port


def _registry(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "registry", *args], capture_output=True, text=True,
                          timeout=timeout)


def _one_line(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("registry: cannot start: "), result.stderr
    for text in expected:
        assert text in last, last
    return last


def test_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = _registry("serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "data"))
    _one_line(result, f"cannot listen on 127.0.0.1:{port}: address already in use", "--listen")


def test_a_data_dir_that_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    data_dir = tmp_path / "a-file" / "data"
    result = _registry("serve", "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(data_dir))
    _one_line(result, str(data_dir), "not a directory")


def test_postgresql_unreachable(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://registry:s3cret@127.0.0.1:{free_port()}/registry"
    result = _registry("serve", "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path / "data"),
                       "--database-url", url)
    line = _one_line(result, "cannot reach the database", "connection refused")
    assert "s3cret" not in result.stderr and "***" in line


def test_postgresql_refusing_the_password(tmp_path: Path, postgres: PostgresServer) -> None:
    url = f"postgresql+asyncpg://{postgres.user}:wrong-password@127.0.0.1:{postgres.port}/postgres"
    result = _registry("serve", "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path / "data"),
                       "--database-url", url)
    _one_line(result, "cannot reach the database", "password")


def test_maintenance_commands_say_it_the_same_way(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://registry:x@127.0.0.1:{free_port()}/registry"
    result = _registry("db", "upgrade", "--data-dir", str(tmp_path / "data"), "--database-url", url)
    _one_line(result, "cannot reach the database")
