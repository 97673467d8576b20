"""Issue 10, acceptance 3: deploy/systemd/registry.service passes `systemd-analyze verify`, its user comes
from registry.sysusers.conf, and its sandboxing keeps systemd's exposure score low.

verify checks that ExecStart's program exists, which it does only once the registry is installed.
So the unit is verified under --root: a scratch root holding this host's system units, the unit
itself, and an executable at the ExecStart path. Any message from verify (an unknown or misspelt
key, a bad value, a missing dependency) fails the test, not only its exit status.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "registry.service"
HOST_UNITS = Path("/usr/lib/systemd/system")
MAX_EXPOSURE = 2.0  # systemd-analyze security: 0 (locked down) .. 10 (fully exposed)


def _systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze not found; install it with: scripts/system-deps systemd (make system-deps)",
                    pytrace=False)
    return path


def _scratch_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(HOST_UNITS, root / HOST_UNITS.relative_to("/"), symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy2(UNIT, root / "etc/systemd/system" / UNIT.name)
    program = re.search(r"^ExecStart=[-@:+!]*(\S+)", UNIT.read_text(), re.M)
    assert program, "no ExecStart"
    stub = root / program.group(1).lstrip("/")
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    return root


def test_unit_verifies(tmp_path):
    analyze = _systemd_analyze()
    root = _scratch_root(tmp_path)
    result = subprocess.run([analyze, "verify", f"--root={root}", f"/etc/systemd/system/{UNIT.name}"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), \
        f"systemd-analyze verify:\n{result.stdout}{result.stderr}"


def test_verify_catches_a_misspelt_key(tmp_path):
    """The check above is only worth something if verify complains about mistakes here."""
    analyze = _systemd_analyze()
    root = _scratch_root(tmp_path)
    unit = root / "etc/systemd/system" / UNIT.name
    unit.write_text(unit.read_text().replace("ProtectHome=yes", "ProtectHomes=yes"))
    result = subprocess.run([analyze, "verify", f"--root={root}", f"/etc/systemd/system/{UNIT.name}"],
                            capture_output=True, text=True, timeout=60)
    assert "ProtectHomes" in result.stderr


def test_sandboxing_exposure_is_low():
    result = subprocess.run([_systemd_analyze(), "security", "--offline=yes", "--no-pager", str(UNIT)],
                            capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout + result.stderr)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout


def test_sysusers_file_creates_the_services_user(tmp_path):
    sysusers = shutil.which("systemd-sysusers")
    if sysusers is None:
        pytest.fail("systemd-sysusers not found; install it with: scripts/system-deps systemd", pytrace=False)
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    result = subprocess.run([sysusers, f"--root={root}", str(UNIT.with_name("registry.sysusers.conf"))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    user = re.search(r"^User=(\S+)", UNIT.read_text(), re.M).group(1)  # type: ignore[union-attr]
    group = re.search(r"^Group=(\S+)", UNIT.read_text(), re.M).group(1)  # type: ignore[union-attr]
    home = re.search(r"^WorkingDirectory=(\S+)", UNIT.read_text(), re.M).group(1)  # type: ignore[union-attr]
    passwd = {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").read_text().splitlines()}
    assert passwd[user][5] == home
    assert group in (root / "etc/group").read_text()
