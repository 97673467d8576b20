"""A throwaway PostgreSQL server on 127.0.0.1, for tests and benchmarks.

    with PostgresServer(tmp_path) as pg:
        url = pg.create_database("registry")   # postgresql+asyncpg://postgres:SECRET@127.0.0.1:PORT/registry

The cluster lives in a scratch directory ``<work_dir>/pg-XXXX`` (default work_dir ``/var/tmp``, mode
0755, owned by the ``postgres`` user) rather than in ``base_dir``: pytest's ``tmp_path`` sits below
0700 directories that the ``postgres`` user cannot traverse. ``base_dir`` (owned by whoever runs the
tests) receives the server log, ``postgres-PORT.log``, which survives ``stop()``.

PostgreSQL refuses to run as root, so when this process is root every server command runs as the
``postgres`` system user via ``runuser`` (the user is created if missing); otherwise the commands run
as the current user. The server listens on 127.0.0.1 only, and every connection, TCP or Unix
socket, needs the superuser ``postgres`` and a random password (scram-sha-256).

Needs the PostgreSQL server binaries (Debian: ``scripts/system-deps postgresql``); set
``REGISTRY_TEST_PG_BINDIR`` to use binaries from another directory.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

BINDIR_ENV = "REGISTRY_TEST_PG_BINDIR"
OS_USER = "postgres"
SUPERUSER = "postgres"
INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl, postgres, psql) are needed. On Debian/Ubuntu run "
    "`scripts/system-deps postgresql` as root (or `apt-get install -y postgresql`), "
    f"or set {BINDIR_ENV} to a directory holding them."
)
SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "shared_buffers": "32MB",
    "max_connections": "200",
    "password_encryption": "'scram-sha-256'",
    "logging_collector": "off",
    "log_line_prefix": "'%m [%p] '",
    "timezone": "'UTC'",
}


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be run here (binaries or OS user missing); the message says how to fix it."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_bindir() -> Path:
    """The directory holding initdb/pg_ctl/postgres/psql; raises PostgresUnavailable."""
    needed = ("initdb", "pg_ctl", "postgres", "psql")
    candidates: list[Path] = []
    if os.environ.get(BINDIR_ENV):
        candidates.append(Path(os.environ[BINDIR_ENV]))
    else:
        # Debian keeps server binaries out of PATH, one directory per major version; newest first.
        versions = glob.glob("/usr/lib/postgresql/*/bin")
        versions.sort(key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0, reverse=True)
        candidates += [Path(p) for p in versions]
        if shutil.which("pg_config"):
            out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))
        if shutil.which("initdb"):
            candidates.append(Path(shutil.which("initdb")).parent)  # type: ignore[arg-type]
    for bindir in candidates:
        if all(os.access(bindir / name, os.X_OK) for name in needed):
            return bindir
    looked = ", ".join(str(c) for c in candidates) or "/usr/lib/postgresql/*/bin, PATH"
    raise PostgresUnavailable(f"PostgreSQL not found (looked in: {looked}). {INSTALL_HINT}")


def ensure_os_user() -> pwd.struct_passwd:
    """The `postgres` system account, created when running as root and it does not exist."""
    try:
        return pwd.getpwnam(OS_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    proc = subprocess.run(
        [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/var/lib/postgresql",
         "--shell", "/usr/sbin/nologin", OS_USER],
        capture_output=True, text=True,
    )
    try:
        return pwd.getpwnam(OS_USER)
    except KeyError:
        raise PostgresUnavailable(
            f"running as root but there is no `{OS_USER}` user and `useradd` failed "
            f"({proc.stderr.strip() or proc.returncode}). {INSTALL_HINT}"
        ) from None


_running: set[PostgresServer] = set()


@atexit.register
def _stop_leftovers() -> None:
    # pg_ctl detaches the postmaster from our process group; don't leave it behind if a caller forgot.
    for server in list(_running):
        try:
            server.stop(mode="immediate")
        except Exception:  # noqa: BLE001 - at exit: stop what can be stopped
            pass


class PostgresServer:
    """One PostgreSQL cluster on 127.0.0.1:`port`.

    `start()` runs initdb the first time, then `pg_ctl start`, and returns once the server accepts
    TCP connections. `restart()` keeps data and port. `stop()` also deletes the cluster (pass
    `keep_data=True` to keep it for a later `start()`).
    """

    def __init__(self, base_dir: Path, port: int | None = None, *, work_dir: Path | str = "/var/tmp",
                 settings: dict[str, str] | None = None) -> None:
        self.base_dir = Path(base_dir)
        self._port_given = port is not None
        self.port = port or free_port()
        self.work_dir = Path(work_dir)
        self.settings = {**SERVER_SETTINGS, **(settings or {})}
        self.user = SUPERUSER
        self.password = secrets.token_hex(16)
        self.root: Path | None = None  # scratch dir: data/ and the Unix socket
        self.bindir: Path | None = None
        self._as_root = os.geteuid() == 0
        self._owner: pwd.struct_passwd | None = None
        self.log_path = self.base_dir / f"postgres-{self.port}.log"  # initdb and server output

    # -- paths and URLs ---------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        assert self.root is not None, "server was never started"
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.root is not None, "server was never started"
        return self.root

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy async URL: postgresql+asyncpg://USER:PASSWORD@127.0.0.1:PORT/DATABASE."""
        return f"postgresql+asyncpg://{self._netloc()}/{quote(database, safe='')}"

    def dsn(self, database: str = "postgres") -> str:
        """libpq / plain asyncpg URL for the same database."""
        return f"postgresql://{self._netloc()}/{quote(database, safe='')}"

    def _netloc(self) -> str:
        return f"{quote(self.user, safe='')}:{quote(self.password, safe='')}@127.0.0.1:{self.port}"

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self, timeout: float = 30) -> PostgresServer:
        if self.is_running():
            return self
        self.bindir = self.bindir or find_bindir()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        fresh = self.root is None or not (self.data_dir / "PG_VERSION").exists()
        if fresh:
            self._make_root()
            self._initdb()
        attempts = 1 if (self._port_given or not fresh) else 3
        for attempt in range(attempts):
            try:
                self._pg_ctl_start(timeout)
                break
            except RuntimeError:
                # An auto-picked port can be taken between free_port() and bind(): pick another.
                if attempt + 1 < attempts and "already in use" in self.log_tail(20):
                    self.port = free_port()
                    continue
                raise
        _running.add(self)
        return self

    def stop(self, mode: str = "fast", *, keep_data: bool = False, timeout: float = 30) -> None:
        """pg_ctl stop -m MODE (smart|fast|immediate); then delete the cluster unless keep_data."""
        if self.root is None:
            return
        if self.is_running():
            proc = self._run([self._bin("pg_ctl"), "stop", "-D", str(self.data_dir), "-m", mode, "-w",
                              "-t", str(int(timeout))], check=False)
            if proc.returncode != 0 or self.is_running():
                self._kill_postmaster()
        _running.discard(self)
        if not keep_data:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def restart(self, mode: str = "fast", timeout: float = 30) -> None:
        """Stop (mode "immediate" simulates a crash: recovery runs on start), then start: same data, port."""
        self.stop(mode=mode, keep_data=True)
        self.start(timeout=timeout)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state ------------------------------------------------------------------------------------

    def postmaster_pid(self) -> int | None:
        """The postmaster's pid from postmaster.pid, if that process is alive."""
        if self.root is None:
            return None
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def is_running(self) -> bool:
        if self.root is None or self.bindir is None:
            return False
        proc = self._run([self._bin("pg_ctl"), "status", "-D", str(self.data_dir)], check=False, log=False)
        return proc.returncode == 0

    # -- SQL helpers ------------------------------------------------------------------------------

    def psql(self, sql: str, database: str = "postgres", timeout: float = 60) -> str:
        """Run SQL with psql over TCP as the superuser; returns unaligned, tuples-only output."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["PGPASSWORD"] = self.password
        env["PGCONNECT_TIMEOUT"] = "10"
        proc = subprocess.run(
            [self._bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
             "-p", str(self.port), "-U", self.user, "-d", database, "-c", sql],
            env=env, capture_output=True, text=True, timeout=timeout,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"psql failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout.strip()

    def create_database(self, name: str | None = None) -> str:
        """CREATE DATABASE (a random name if None); returns its SQLAlchemy async URL."""
        name = name or f"db_{secrets.token_hex(6)}"
        self.psql(f"CREATE DATABASE {quote_ident(name)}")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- internals --------------------------------------------------------------------------------

    def _bin(self, name: str) -> str:
        self.bindir = self.bindir or find_bindir()
        return str(self.bindir / name)

    def _make_root(self) -> None:
        if self._as_root:
            self._owner = ensure_os_user()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="pg-", dir=self.work_dir))
        os.chmod(self.root, 0o755)
        if self._owner is not None:
            os.chown(self.root, self._owner.pw_uid, self._owner.pw_gid)
            probe = subprocess.run(["runuser", "-u", OS_USER, "--", "test", "-w", str(self.root)],
                                   capture_output=True)
            if probe.returncode != 0:
                root, self.root = self.root, None
                shutil.rmtree(root, ignore_errors=True)
                raise PostgresUnavailable(
                    f"user `{OS_USER}` cannot write to {root}; pass a work_dir it can traverse (e.g. /var/tmp)")

    def _initdb(self) -> None:
        assert self.root is not None
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        os.chmod(pwfile, 0o600)
        if self._owner is not None:
            os.chown(pwfile, self._owner.pw_uid, self._owner.pw_gid)
        try:
            proc = self._run([
                self._bin("initdb"), "-D", str(self.data_dir), "-U", self.user, f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "--encoding=UTF8", "--locale=C",
                "--no-sync",  # only initdb's own fsync of the fresh cluster; the server keeps fsync=on
            ], check=False)
        finally:
            pwfile.unlink(missing_ok=True)
        if proc.returncode != 0:
            raise RuntimeError(f"initdb failed ({proc.returncode}); log {self.log_path}:\n{self.log_tail()}")
        conf = "\n".join(f"{key} = {value}" for key, value in self.settings.items())
        with open(self.data_dir / "postgresql.conf", "a") as fh:
            fh.write(f"\n# tests/support/postgres.py\n{conf}\n")

    def _pg_ctl_start(self, timeout: float) -> None:
        # Port and socket dir go on the command line, so a restart after a port change still works.
        options = f"-p {self.port} -k {self.socket_dir}"
        proc = self._run([self._bin("pg_ctl"), "start", "-D", str(self.data_dir), "-o", options, "-w",
                          "-t", str(int(max(timeout, 1)))], check=False, timeout=timeout + 10)
        if proc.returncode != 0:
            self._kill_postmaster()
            raise RuntimeError(
                f"pg_ctl start failed ({proc.returncode}) on port {self.port}; log {self.log_path}:\n{self.log_tail()}")
        deadline = time.monotonic() + timeout
        while True:  # pg_ctl -w waits for "ready"; make sure TCP on 127.0.0.1 answers as well
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres not accepting TCP on 127.0.0.1:{self.port}:\n{self.log_tail()}") \
                        from None
                time.sleep(0.05)

    def _kill_postmaster(self) -> None:
        """Last resort: SIGQUIT then SIGKILL the postmaster (its children exit when it dies)."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        for sig, wait in ((signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not pid_alive(pid):
                    return
                time.sleep(0.05)

    def _run(self, argv: list[str], *, check: bool = True, log: bool = True,
             timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        """Run a server command as the postgres OS user; output appended to the log in base_dir.

        The log file is opened here (by the caller's user), so base_dir need not be reachable by
        `postgres`; the postmaster started by pg_ctl inherits it as stdout/stderr.
        """
        if self._as_root:
            if self._owner is None:
                self._owner = ensure_os_user()
            argv = ["runuser", "-u", OS_USER, "--", *argv]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        cwd = str(self.root) if self.root is not None else "/"
        if log:
            self.base_dir.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "ab") as out:
                return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                      env=env, cwd=cwd, check=check, timeout=timeout)
        return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=env, cwd=cwd, check=check, timeout=timeout)

    def __repr__(self) -> str:
        return f"<PostgresServer 127.0.0.1:{self.port} root={self.root}>"


def pid_alive(pid: int) -> bool:
    """True if the process exists and is not a zombie (a container's PID 1 may never reap the
    postmaster that pg_ctl detached, so a dead one can linger as <defunct>)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
