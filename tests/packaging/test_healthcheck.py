"""`python -m registry.healthcheck`, the image's HEALTHCHECK: it finds the server from the same
configuration (port, TLS) and exits 0 only when /healthz answers 200."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from registry.config import Config
from registry.healthcheck import probe_address
from tests.auth.conftest import AuthRegistry
from tests.support.host import assert_log_has_no_new_traceback
from tests.support.server import RegistryProcess, free_port


def _probe(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    return subprocess.run([sys.executable, "-m", "registry.healthcheck"], env={**clean, **env},
                          capture_output=True, text=True, timeout=30)


def test_wildcard_addresses_are_probed_on_loopback():
    assert probe_address(Config(listen=":5000")) == ("127.0.0.1", 5000)
    assert probe_address(Config(listen="0.0.0.0:5001")) == ("127.0.0.1", 5001)
    assert probe_address(Config(listen="[::]:5002")) == ("::1", 5002)
    assert probe_address(Config(listen="10.1.2.3:5003")) == ("10.1.2.3", 5003)


def test_healthy_plain_http(fresh_registry: RegistryProcess):
    result = _probe({"REGISTRY_LISTEN": fresh_registry.host})
    assert result.returncode == 0, result.stderr
    assert "/healthz answered 200" in result.stdout
    assert_log_has_no_new_traceback(fresh_registry.log_path)


def test_healthy_with_self_signed_tls(tmp_path: Path):
    with AuthRegistry(tmp_path / "data", ["--tls-self-signed"]) as registry:
        result = _probe({"REGISTRY_LISTEN": registry.host, "REGISTRY_TLS_SELF_SIGNED": "true",
                         "REGISTRY_DATA_DIR": str(registry.data_dir)})
        assert result.returncode == 0, result.stderr
    assert_log_has_no_new_traceback(registry.log_path)


def test_unhealthy_when_nothing_listens():
    result = _probe({"REGISTRY_LISTEN": f"127.0.0.1:{free_port()}"})
    assert result.returncode == 1 and "Connection refused" in result.stderr


def test_a_configuration_error_is_unhealthy():
    result = _probe({"REGISTRY_LISTEN": "no-port"})
    assert result.returncode == 1 and "configuration error" in result.stderr
