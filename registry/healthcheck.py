"""`python -m registry.healthcheck`: exit 0 when this host's registry answers GET /healthz with 200.

For container HEALTHCHECKs and other local probes that have no curl. It reads the same
configuration as `registry serve` (REGISTRY_* environment, REGISTRY_CONFIG file) to find the
port and whether TLS is on. TLS is not verified: the probe talks to its own host only.
"""

from __future__ import annotations

import http.client
import ssl
import sys

from registry.config import Config, ConfigError, load


def probe_address(config: Config) -> tuple[str, int]:
    """Where a local client reaches the server: the wildcard addresses mean loopback."""
    host, port = config.host_port
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return host, port


def check(config: Config, timeout: float = 3.0) -> tuple[bool, str]:
    host, port = probe_address(config)
    tls = config.tls.self_signed or bool(config.tls.cert_file)
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/healthz")
        status = conn.getresponse().status
    except OSError as exc:
        return False, f"{host}:{port}: {exc}"
    finally:
        conn.close()
    return status == 200, f"{host}:{port}: /healthz answered {status}"


def main() -> int:
    try:
        ok, message = check(load())
    except ConfigError as exc:
        ok, message = False, f"configuration error: {exc}"
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
