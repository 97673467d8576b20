"""Running the server: one process, or a supervisor with N workers sharing one listening socket."""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path


from registry import __version__
from registry.addresses import is_loopback
from registry.config import Config
from registry.startup import StartupError, reason

log = logging.getLogger("registry")
LIFECYCLE = logging.getLogger("registry.lifecycle")  # start and stop lines: shown at every --log-level


def bind(config: Config) -> socket.socket:
    host, port = config.host_port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        hint = " (another process holds it; choose another with --listen)" if exc.errno == errno.EADDRINUSE else ""
        raise StartupError(f"cannot listen on {host or '0.0.0.0'}:{port}: {reason(exc)}{hint}") from None
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def prepare_data_dir(config: Config) -> None:
    """The data directory (and a filesystem store's root) made before any worker starts, or one line why not."""
    wanted = [Path(config.data_dir)] + ([Path(config.storage_root)] if config.storage.backend == "filesystem" else [])
    for directory in wanted:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(directory) else ""
            raise StartupError(f"cannot use {directory} as the data directory: {reason(exc)}{where}") from None
        if not os.access(directory, os.W_OK | os.X_OK):
            raise StartupError(f"cannot use {directory} as the data directory: not writable by this user "
                               f"(uid {os.getuid()})")


def run_worker(config: Config, sock: socket.socket) -> None:
    from registry.admin.access import ACCESS_LOGGER, AccessLogger
    from registry.app import create_app
    from registry.http_edges import run_app
    from registry.tls import ssl_context

    # web.run_app, with the spec's JSON also for requests aiohttp's parser refuses (registry/http_edges.py)
    run_app(create_app(config), sock, ssl_context(config), access_log_class=AccessLogger, access_log=ACCESS_LOGGER,
            shutdown_timeout=5, keepalive_timeout=config.limits.idle_timeout)


def serve(config: Config) -> int:
    from registry.tls import ssl_context

    ssl_context(config)  # fail before forking on bad certificates; creates the self-signed set once
    prepare_data_dir(config)
    sock = bind(config)
    host, port = sock.getsockname()[:2]
    LIFECYCLE.info("%s", summary(config, host, port))
    for warning in exposure_warnings(config, host, port):
        LIFECYCLE.warning("%s", warning)
    try:
        if config.workers == 1:
            run_worker(config, sock)
            return 0
        from registry.admin.metrics_dir import share_metrics

        share_metrics(Path(config.data_dir))  # before any worker imports prometheus_client
        return _supervise(config, sock)
    finally:
        LIFECYCLE.info("registry %s on %s:%d stopped", __version__, host, port)


def summary(config: Config, host: str, port: int) -> str:
    """The start-up line: where it listens and what it runs on, with no secret in it."""
    from sqlalchemy.engine import make_url

    scheme = "https" if config.tls.cert_file or config.tls.self_signed else "http"
    storage = (f"filesystem at {config.storage_root}" if config.storage.backend == "filesystem" else
               f"s3 bucket {config.storage.s3.bucket} at {config.storage.s3.endpoint_url or 'AWS'}")
    database = make_url(config.database_url).render_as_string(hide_password=True)
    mirrors = ", ".join(f"{u['alias']}={u['url']}" for u in config.mirror.upstreams if isinstance(u, dict))
    return (f"registry {__version__} listening on {scheme}://{host}:{port} with {config.workers} worker(s); "
            f"auth {config.auth.mode}; storage {storage}; database {database}; "
            f"mirrors {mirrors or 'none'}")


def exposure_warnings(config: Config, host: str, port: int) -> list[str]:
    """What an operator should know before a registry without credentials faces a network."""
    if config.auth.mode != "none" or is_loopback(host):
        return []
    where = f"{host}:{port}"
    warnings = [f"auth.mode is none on {where}, which is not a loopback address: anyone who can reach it can "
                f"pull every image (set auth.mode to basic or token, or listen on 127.0.0.1)"]
    outside = [n.strip() for n in config.auth.anonymous_push_networks.split(",") if n.strip() and not is_loopback(
        n.strip().split("/")[0])]
    if outside:
        warnings.append(f"auth.anonymous_push_networks lets {', '.join(outside)} push and delete on {where} "
                        "without credentials")
    return warnings





def _supervise(config: Config, sock: socket.socket) -> int:
    """Fork the workers, restart any that die, and pass SIGTERM/SIGINT on to all of them."""
    from registry.admin.metrics_dir import worker_exited

    children: dict[int, int] = {}  # pid -> slot
    stopping = False

    def spawn(slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            try:
                run_worker(config, sock)
            finally:
                os._exit(0)
        children[pid] = slot

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for slot in range(config.workers):
        spawn(slot)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        ended = children.pop(pid, None)
        worker_exited(pid)
        if ended is not None and not stopping:
            log.error("worker %d exited (status %d); starting another", pid, status)
            time.sleep(0.5)
            spawn(ended)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `registry serve`")
