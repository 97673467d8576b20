"""Start the registry as a real process on loopback, for tests and benchmarks.

Also on another address (`listen_host`), with TLS (`tls`), or through a launcher such as
`ip netns exec NS` (`wrap`). Every RegistryProcess made is remembered in SERVER_LOGS, so the e2e
suite can check each server's log for tracebacks after every test.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from collections.abc import Sequence

from tests.support.process import wait_until_answers
from tests.support.storage_view import FilesystemView, StorageView
from tests.support.testca import ServerCert

SERVER_LOGS: list[Path] = []  # the log of every registry process made, in order (see tests/e2e/conftest.py)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RegistryProcess:
    """`registry serve` in a subprocess; `url` is ready once `start()` returns."""

    def __init__(self, data_dir: Path, port: int | None = None, env: dict[str, str] | None = None,
                 args: list[str] | None = None, log_path: Path | None = None,
                 storage: StorageView | None = None, listen_host: str = "127.0.0.1",
                 tls: ServerCert | None = None, wrap: Sequence[str] = ()) -> None:
        self.data_dir = Path(data_dir)
        self.listen_host = listen_host
        self.tls = tls
        self.wrap = list(wrap)  # e.g. ["ip", "netns", "exec", NS]: where the process runs
        self.storage: StorageView = storage or FilesystemView(self.data_dir)
        self.port = port or free_port()
        self.env = env or {}
        self.args = args or []
        self.log_path = log_path or self.data_dir.parent / f"registry-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        if self.log_path not in SERVER_LOGS:
            SERVER_LOGS.append(self.log_path)

    @property
    def host(self) -> str:
        return f"{self.listen_host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def verify(self) -> ssl.SSLContext | bool:
        """What an HTTP client needs to trust this server (httpx `verify=`)."""
        return ssl.create_default_context(cafile=str(self.tls.ca_file)) if self.tls else True

    def start(self, timeout: float = 30) -> RegistryProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        log = open(self.log_path, "ab")
        tls = ["--tls-cert-file", str(self.tls.cert_file), "--tls-key-file", str(self.tls.key_file)] if self.tls else []
        self.proc = subprocess.Popen(
            [*self.wrap, sys.executable, "-m", "registry", "serve", "--listen", self.host, "--data-dir",
             str(self.data_dir), *tls, *self.args],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until_answers(self.proc, f"{self.url}/v2/", lambda status: status == 200, timeout, "registry",
                           self.log_tail, self.stop, verify=self.verify())
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        """kill -9: no chance to clean up, as in a crash."""
        self.stop(signal.SIGKILL)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> RegistryProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
