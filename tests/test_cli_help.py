"""Each subcommand's help shows its own options: `registry user add --help` used to print all 300 lines of
the server's, and a bad user name a 60-line usage block before its one-line error. The server's options are
still accepted everywhere (a shared --config or REGISTRY_* environment keeps working)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _registry(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "registry", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", [["user", "add"], ["user", "list"], ["robot", "add"], ["robot", "remove"],
                                     ["gc"], ["retention"], ["fsck"], ["db", "upgrade"],
                                     ["import"], ["export"]])
def test_subcommand_help_lists_its_own_options(command: list[str]) -> None:
    result = _registry(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "--data-dir" in result.stdout and "--listen" not in result.stdout and "--tls-cert-file" not in result.stdout
    assert len(result.stdout.splitlines()) < 80, result.stdout
    assert "registry serve --help" in result.stdout


def test_serve_help_still_lists_everything() -> None:
    result = _registry("serve", "--help")
    assert "--listen" in result.stdout and "--tls-cert-file" in result.stdout and "--gc-interval" in result.stdout


def test_a_bad_name_is_a_short_usage_and_one_error() -> None:
    result = _registry("user", "add", "Bad Name!")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) <= 8 and lines[-1].startswith("registry user add: error:"), result.stderr


def test_options_not_shown_are_still_accepted(tmp_path: Path) -> None:
    result = _registry("user", "list", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:5999",
                       "--log-level", "warning")
    assert result.returncode == 0, result.stderr
