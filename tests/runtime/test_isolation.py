"""Acceptance 2: what a process inside sees: PID 1 is the command, its hostname, Docker's default capabilities,
no_new_privs, seccomp, runc's /dev, a read-only /sys, masked /proc paths, and the image config's
Env, WorkingDir and User."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.runtime import images as im
from tests.runtime.conftest import Runtime, require_tool
from tests.support import host

DOCKER_DEFAULT_CAPS = "00000000a80425fb"
LIST_DEV = "cd /dev && find . | sort && stat -c '%n %F %t:%T %a' $(find . -maxdepth 1 | sort)"


def status_field(text: str, name: str) -> str:
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{name} not in {text}")


def test_pid1_hostname_and_security_state(runtime: Runtime, pulled_base: str) -> None:
    out = runtime.cli("run", "--rm", "--hostname", "box1", pulled_base, "sh", "-c",
                      "echo pid=$$; cat /proc/1/comm; hostname; ps -o pid,comm; cat /proc/self/status").stdout
    assert "pid=1" in out, "the command is PID 1, as with Docker and runc"
    assert out.splitlines()[1] == "sh"
    assert out.splitlines()[2] == "box1"
    pids = [line.split()[0] for line in out.splitlines() if line.strip() and line.split()[0].isdigit()]
    assert pids[0] == "1" and len(pids) == 2, "only the container's processes are visible"
    assert status_field(out, "CapEff") == DOCKER_DEFAULT_CAPS
    assert status_field(out, "CapPrm") == DOCKER_DEFAULT_CAPS
    assert status_field(out, "CapBnd") == DOCKER_DEFAULT_CAPS
    assert status_field(out, "CapInh") == "0000000000000000"
    assert status_field(out, "NoNewPrivs") == "1"
    assert status_field(out, "Seccomp") == "2"


def test_seccomp_and_capabilities_refuse_what_they_should(runtime: Runtime, pulled_base: str) -> None:
    script = ("mount -t tmpfs none /tmp 2>&1 && echo MOUNTED; "
              "hostname other 2>&1 && echo RENAMED; "
              "echo 1 > /proc/sys/kernel/domainname 2>&1 || echo PROCSYS-RO; "
              "unshare -U true 2>&1 && echo USERNS; true")
    out = runtime.cli("run", "--rm", pulled_base, "sh", "-c", script).stdout
    assert "MOUNTED" not in out and "RENAMED" not in out
    assert "PROCSYS-RO" in out
    assert "USERNS" not in out, "seccomp refuses new user namespaces even though they need no capability"


def test_host_block_devices_cannot_be_opened(runtime: Runtime, pulled_base: str) -> None:
    """CAP_MKNOD makes a node of the host's root disk; the devices cgroup refuses to open it (as Docker)."""
    import os

    disk = host.block_device()
    if disk is None:
        pytest.skip("no block device on this host to make a node of (/sys/block lists none with a /dev node)")
    st = os.stat(disk)
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    out = runtime.cli("run", "--rm", pulled_base, "sh", "-c",
                      f"mknod /tmp/disk b {major} {minor} 2>&1; head -c 16 /tmp/disk 2>&1 | wc -c; "
                      "head -c 16 /tmp/disk 2>&1; mknod /tmp/null c 1 3 && echo ok > /tmp/null && echo null-ok").stdout
    assert "Operation not permitted" in out, out
    if host.cgroups().place("devices") == "v1":  # mknod stays allowed, opening is what the cgroup checks
        assert "null-ok" in out


def test_sys_read_only_and_proc_masked(runtime: Runtime, pulled_base: str) -> None:
    # /proc/keys and /proc/acpi exist only with CONFIG_KEYS and ACPI: where absent, there is nothing to mask.
    script = ("touch /sys/kernel/x 2>/dev/null && echo SYS-WRITABLE; "
              "awk '$5==\"/sys\"' /proc/self/mountinfo; "
              "echo keys=$(cat /proc/keys 2>/dev/null | wc -c); echo acpi=$(ls /proc/acpi 2>/dev/null | wc -l); "
              "awk '$5==\"/proc/sys\"' /proc/self/mountinfo")
    out = runtime.cli("run", "--rm", pulled_base, "sh", "-c", script).stdout
    lines = out.splitlines()
    assert "SYS-WRITABLE" not in out
    assert " ro," in lines[0] or " ro " in lines[0], lines[0]
    assert lines[1] == "keys=0", "/proc/keys is masked with /dev/null"
    assert lines[2] == "acpi=0", "/proc/acpi is masked with an empty tmpfs"
    assert " ro," in lines[3], "/proc/sys is read-only"


def test_dev_is_the_same_as_runcs(runtime: Runtime, pulled_base: str, tmp_path: Path) -> None:
    runc = require_tool("runc", "runc")
    ours = runtime.cli("run", "--rm", pulled_base, "sh", "-c", LIST_DEV).stdout
    # runc on the same unpacked layer, with `runc spec`'s defaults (no terminal).
    image = json.loads(runtime.cli("inspect", pulled_base).stdout)[0]
    layer_dir = runtime.root / "layers" / image["layers"][0]["diff_id"].split(":")[1]
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    subprocess.run([runc, "spec"], cwd=bundle, check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["root"] = {"path": str(layer_dir), "readonly": True}
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/sh", "-c", LIST_DEV]
    (bundle / "config.json").write_text(json.dumps(config))
    name = f"rt-dev-{uuid.uuid4().hex[:8]}"
    try:
        theirs = subprocess.run([runc, "run", name], cwd=bundle, capture_output=True, text=True, timeout=60)
    finally:
        subprocess.run([runc, "delete", "-f", name], capture_output=True)
    assert theirs.returncode == 0, theirs.stderr
    assert ours.splitlines() == theirs.stdout.splitlines()


@pytest.fixture(scope="module")
def app_image(runtime: Runtime) -> str:
    image = im.push(runtime.registry.url, f"rt-{uuid.uuid4().hex[:8]}/app", "v1",
                    [im.layer(im.busybox_entries() + [im.directory("home"), im.directory("home/app", 0o755, 1000,
                                                                                            1000)])],
                    {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo default"],
                     "Env": ["PATH=/bin", "GREETING=hello world", "EMPTY="],
                     "WorkingDir": "/home/app/work", "User": "app"})
    return image.reference


def test_env_workdir_user_from_the_image_config(runtime: Runtime, app_image: str) -> None:
    out = runtime.cli("run", "--rm", app_image,
                      'echo "$GREETING|$EMPTY|$HOME|$PATH"; pwd; id; grep CapEff /proc/self/status').stdout
    lines = out.splitlines()
    assert lines[0] == "hello world||/home/app|/bin"
    assert lines[1] == "/home/app/work"
    assert lines[2].startswith("uid=1000(app) gid=1000(app)") and "2000(extra)" in lines[2]
    assert lines[3].split()[1] == "0000000000000000", "a non-root user has no capabilities, as with Docker"
    default = runtime.cli("run", "--rm", app_image).stdout
    assert default.strip() == "default", "Entrypoint + Cmd"


def test_flags_override_the_image_config(runtime: Runtime, app_image: str) -> None:
    out = runtime.cli("run", "--rm", "-e", "GREETING=bye", "-e", "EXTRA=1", "-w", "/tmp", "-u", "0:2000",
                      app_image, 'echo "$GREETING $EXTRA"; pwd; id -u; id -g').stdout
    assert out.splitlines() == ["bye 1", "/tmp", "0", "2000"]


def test_missing_command_is_127_with_a_message(runtime: Runtime, pulled_base: str) -> None:
    result = runtime.cli("run", "--rm", pulled_base, "no-such-program", check=False)
    assert result.returncode == 127
    assert "no-such-program" in result.stderr and "not found" in result.stderr
