"""No process in the container is more privileged than the workload, and the runtime's own processes live
outside the container's cgroups (issue 18).

By default the command is PID 1, as with Docker and runc; with --init, tini-static (bind-mounted read-only at
/sbin/docker-init, as Docker mounts docker-init) is PID 1 with exactly the workload's capabilities, seccomp
filter and no_new_privs. The runtime's helpers (the monitor, the stage process, exec's helper) are outside the
container's pid namespace and its cgroups, so --pids-limit N holds N workload processes and --memory counts
only the workload. `runc run` on the same bundle is the reference for /proc/1/ns and /dev.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.runtime.conftest import REPO, Runtime, inspect, require_tool, wait_for

DOCKER_DEFAULT_CAPS = 0xA80425FB
MODES = [pytest.param([], id="default"), pytest.param(["--init"], id="init")]
SECURITY = "grep -E 'Cap|NoNewPrivs|Seccomp' /proc/1/status"
# Every process's security state, from inside: pid, name, then the status fields that matter.
EVERY_PROCESS = ("for f in /proc/[0-9]*/status; do "
                 "awk '/^(Pid|Name|CapEff|CapPrm|CapBnd|CapAmb|CapInh|NoNewPrivs|Seccomp):/ {printf \"%s=%s \", $1, $2}"
                 " END {print \"\"}' $f 2>/dev/null; done")


def wait_ready(runtime: Runtime, name: str, marker: str = "ready") -> None:
    wait_for(lambda: marker in runtime.cli("logs", name).stdout, what=f"{marker!r} in the logs of {name}")


def fields(text: str) -> dict[str, str]:
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines()) if _}


def assert_confined(status: dict[str, str], who: str) -> None:
    """Docker's default set for a root workload, and nothing more, with seccomp and no_new_privs."""
    for cap in ("CapEff", "CapPrm", "CapBnd"):
        assert int(status[cap], 16) & ~DOCKER_DEFAULT_CAPS == 0, f"{who}: {cap} {status[cap]} exceeds the workload's"
    assert int(status["CapInh"], 16) == 0 and int(status["CapAmb"], 16) == 0, f"{who}: {status}"
    assert status["NoNewPrivs"] == "1", f"{who}: {status}"
    assert status["Seccomp"] == "2", f"{who}: {status}"


def host_pids_in_pid_namespace(ns_of: int) -> set[int]:
    """The host pids of every process in the pid namespace of `ns_of`."""
    target = os.readlink(f"/proc/{ns_of}/ns/pid")
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") == target:
                    found.add(int(entry))
            except OSError:
                pass
    return found


def cgroup_members(dirs: dict[str, str]) -> dict[str, set[int]]:
    """Each of the container's cgroups (v1 controllers, v2) -> the pids in it (cgroup.procs)."""
    return {name: {int(p) for p in (Path(d) / "cgroup.procs").read_text().split()} for name, d in dirs.items()}


# -- PID 1 ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_pid1_is_the_command_or_a_confined_init(runtime: Runtime, pulled_base: str, mode: list[str]) -> None:
    out = runtime.cli("run", "--rm", *mode, pulled_base, "sh", "-c",
                      f"tr '\\0' ' ' < /proc/1/cmdline; echo; {SECURITY}").stdout
    cmdline, _, rest = out.partition("\n")
    if mode:
        assert cmdline.split()[:3] == ["/sbin/docker-init", "--", "sh"], cmdline
    else:
        assert cmdline.split()[:2] == ["sh", "-c"], cmdline
    for host_path in (str(REPO), "/usr/bin", "tini-static", "python", "venv"):
        assert host_path not in cmdline, f"PID 1 shows a host path: {cmdline}"
    status = fields(rest)
    assert status["CapEff"] == f"{DOCKER_DEFAULT_CAPS:016x}", status
    assert_confined(status, "PID 1")


def test_init_of_a_non_root_workload_has_no_capabilities(runtime: Runtime, pulled_base: str) -> None:
    out = runtime.cli("run", "--rm", "--init", "-u", "1000:1000", pulled_base, "sh", "-c",
                      f"id -u; tr '\\0' ' ' < /proc/1/cmdline; echo; {SECURITY}; stat -c %u /proc/1").stdout
    lines = out.splitlines()
    assert lines[0] == "1000" and lines[1].startswith("/sbin/docker-init -- sh"), out
    status = fields("\n".join(lines[2:-1]))
    assert int(status["CapEff"], 16) == int(status["CapPrm"], 16) == 0, status
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2", status
    assert lines[-1] == "1000", "the reaper runs as the workload's user"


def test_init_is_read_only_and_static(runtime: Runtime, pulled_base: str) -> None:
    out = runtime.cli("run", "--rm", "--init", pulled_base, "sh", "-c",
                      "echo x > /sbin/docker-init 2>&1 || echo refused; cat /proc/1/comm").stdout
    assert "refused" in out
    assert out.split()[-1] in ("docker-init", "tini-static"), out


def test_init_missing_is_a_clear_error(runtime: Runtime, pulled_base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without /usr/bin/tini-static, --init says what to install and exits 125 (checked through the CLI's own
    check by pointing it at a path that does not exist)."""
    from registry.runtime import cli, process

    monkeypatch.setattr(process, "TINI", "/nonexistent/tini-static")
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cli.add_commands(sub)
    args = parser.parse_args(["run", "--rm", "--init", "--pull", "never", pulled_base, "true"])
    assert args.func(args) == 125


@pytest.mark.parametrize("mode", MODES)
def test_no_process_holds_more_than_the_workload(runtime: Runtime, pulled_base: str, mode: list[str]) -> None:
    name = f"conf-{uuid.uuid4().hex[:6]}"
    runtime.cli("run", "-d", "--name", name, *mode, pulled_base, "sh", "-c",
                "sleep 60 & sleep 60 & echo ready; wait")
    try:
        wait_ready(runtime, name)
        out = runtime.cli("exec", name, "sh", "-c", EVERY_PROCESS).stdout
        rows = [dict(kv.split("=", 1) for kv in line.replace(":=", "=").split()) for line in out.splitlines()
                if "Pid:=" in line]  # a process that ended between the glob and the read prints nothing
        names = sorted(r["Name"] for r in rows)
        expected = ["sh", "sh", "sleep", "sleep"] + (["docker-init" if "docker-init" in names
                                                             else "tini-static"] if mode else [])
        assert sorted(names) == sorted(expected), rows
        for row in rows:
            assert_confined(row, f"pid {row['Pid']} ({row['Name']})")
    finally:
        runtime.cli("rm", "-f", name)


# -- side by side with runc -------------------------------------------------------------------------------

COMPARED = ("ls /proc/1/ns; echo ==; for n in /proc/1/ns/*; do echo ${n##*/} $(readlink $n); done; echo ==; "
            "ls -la /dev; echo ==; " + SECURITY + "; echo ==; sed 's/:.*//' /proc/self/status")


def _runc(runtime: Runtime, pulled_base: str, bundle: Path) -> str:
    runc = require_tool("runc", "runc")
    image = json.loads(runtime.cli("inspect", pulled_base).stdout)[0]
    layer_dir = runtime.root / "layers" / image["layers"][0]["diff_id"].split(":")[1]
    bundle.mkdir()
    subprocess.run([runc, "spec"], cwd=bundle, check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["root"] = {"path": str(layer_dir), "readonly": True}
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/sh", "-c", COMPARED]
    # runc's template predates cgroup namespaces by default; Docker (on cgroup v2) and we make one.
    namespaces = config["linux"]["namespaces"]
    if not any(ns["type"] == "cgroup" for ns in namespaces):
        namespaces.append({"type": "cgroup"})
    (bundle / "config.json").write_text(json.dumps(config))
    name = f"rt-conf-{uuid.uuid4().hex[:8]}"
    try:
        theirs = subprocess.run([runc, "run", name], cwd=bundle, capture_output=True, text=True, timeout=60)
    finally:
        subprocess.run([runc, "delete", "-f", name], capture_output=True)
    assert theirs.returncode == 0, theirs.stderr
    return theirs.stdout


def _unshared(listing: str) -> list[str]:
    """Which of PID 1's namespaces differ from this (host-side) test's."""
    out = []
    for line in listing.splitlines():
        kind, link = line.split()
        if os.readlink(f"/proc/self/ns/{kind}") != link:
            out.append(kind)
    return sorted(out)


def _dev_listing(text: str) -> list[str]:
    """`ls -la /dev` without the times (each side made its /dev at its own moment) and without `..`, which is the
    root: our overlay, runc's bare layer directory."""
    return [re.sub(r"\s+[A-Z][a-z]{2}\s+\d+\s+(\d\d:\d\d|\d{4})\s+", " ", line) for line in text.splitlines()
            if not line.endswith(" ..")]


def test_same_as_runc_on_the_same_bundle(runtime: Runtime, pulled_base: str, tmp_path: Path) -> None:
    ours = runtime.cli("run", "--rm", pulled_base, "sh", "-c", COMPARED).stdout.split("==\n")
    theirs = _runc(runtime, pulled_base, tmp_path / "bundle").split("==\n")
    assert ours[0] == theirs[0], "ls /proc/1/ns"
    assert _unshared(ours[1]) == _unshared(theirs[1]) == ["cgroup", "ipc", "mnt", "net", "pid", "pid_for_children",
                                                          "uts"]
    assert _dev_listing(ours[2]) == _dev_listing(theirs[2]), "ls -la /dev"
    # runc's template is stricter (3 capabilities, no seccomp): the fields are the reference, not the values.
    assert list(fields(ours[3])) == list(fields(theirs[3]))
    assert fields(ours[3])["CapEff"] == f"{DOCKER_DEFAULT_CAPS:016x}"
    assert_confined(fields(ours[3]), "PID 1")
    assert ours[4] == theirs[4], "the fields of /proc/self/status"


# -- signals, reaping, exit codes -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_orphans_are_reaped(runtime: Runtime, pulled_base: str, mode: list[str]) -> None:
    name = f"reap-{uuid.uuid4().hex[:6]}"
    runtime.cli("run", "-d", "--name", name, *mode, pulled_base, "sh", "-c",
                "for i in 1 2 3 4 5; do sh -c 'sleep 0.2 &'; done; echo ready; while true; do sleep 0.1; done")
    try:
        wait_ready(runtime, name)
        time.sleep(1)
        out = runtime.cli("exec", name, "sh", "-c",
                          "for s in /proc/[0-9]*/stat; do read -r line < $s; set -- $line; echo \"$1 $2 $3\"; done"
                          ).stdout
        states = [line.split()[2] for line in out.splitlines() if line.strip()]
        assert states and "Z" not in states, out
    finally:
        runtime.cli("rm", "-f", name)


def test_sigterm_is_forwarded_by_the_init(runtime: Runtime, pulled_base: str) -> None:
    """With --init a workload without a handler dies of SIGTERM (143); with one, its handler runs."""
    runtime.cli("run", "-d", "--name", "fwd-plain", "--init", pulled_base, "sh", "-c",
                "echo ready; while true; do sleep 0.1; done")
    runtime.cli("run", "-d", "--name", "fwd-trap", "--init", pulled_base, "sh", "-c",
                "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.1; done")
    try:
        for name, code in (("fwd-plain", 143), ("fwd-trap", 7)):
            wait_ready(runtime, name)
            started = time.monotonic()
            runtime.cli("stop", "-t", "20", name)
            assert time.monotonic() - started < 15, "SIGTERM ended it, not the SIGKILL after the grace time"
            state = inspect(runtime, name)
            assert state["status"] == "exited" and state["exit_code"] == code, state
        assert "got-term" in runtime.cli("logs", "fwd-trap").stdout
    finally:
        runtime.cli("rm", "-f", "fwd-plain", "fwd-trap")


def test_sigterm_to_a_pid1_without_a_handler_is_ignored_as_in_docker(runtime: Runtime, pulled_base: str) -> None:
    runtime.cli("run", "-d", "--name", "deaf", pulled_base, "sh", "-c", "echo ready; while true; do sleep 0.1; done")
    try:
        wait_ready(runtime, "deaf")
        runtime.cli("kill", "-s", "TERM", "deaf")
        time.sleep(1)
        assert inspect(runtime, "deaf")["status"] == "running", "the kernel drops a signal PID 1 does not handle"
        started = time.monotonic()
        runtime.cli("stop", "-t", "1", "deaf")
        assert time.monotonic() - started >= 1
        state = inspect(runtime, "deaf")
        assert state["status"] == "exited" and state["exit_code"] == 137, state
    finally:
        runtime.cli("rm", "-f", "deaf")


@pytest.mark.parametrize("mode", MODES)
def test_exit_codes_are_preserved(runtime: Runtime, pulled_base: str, mode: list[str]) -> None:
    assert runtime.cli("run", "--rm", *mode, pulled_base, "sh", "-c", "exit 3", check=False).returncode == 3
    assert runtime.cli("run", "--rm", *mode, pulled_base, "no-such-program", check=False).returncode == 127
    name = f"code-{uuid.uuid4().hex[:6]}"
    runtime.cli("run", "-d", "--name", name, *mode, pulled_base, "sh", "-c", "echo ready; sleep 60; true")
    try:
        wait_ready(runtime, name)
        runtime.cli("kill", "-s", "KILL", name)
        wait_for(lambda: inspect(runtime, name)["status"] == "exited", what="the container to exit")
        assert inspect(runtime, name)["exit_code"] == 137
    finally:
        runtime.cli("rm", "-f", name)
    if mode:  # under the init, the command may die of its own signal
        assert runtime.cli("run", "--rm", *mode, pulled_base, "sh", "-c", "kill -USR1 $$",
                           check=False).returncode == 128 + signal.SIGUSR1


# -- the runtime's processes are outside the cgroups -------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_pids_limit_counts_only_the_workload(runtime: Runtime, pulled_base: str, mode: list[str]) -> None:
    """--pids-limit 10: exactly 10 workload processes run (tini counts under --init, as in Docker); the 11th fork
    is refused."""
    sleeps = " ".join(str(i) for i in range(9 - len(mode)))
    # Only builtins besides the sleeps: a shell aborts at a fork it cannot make, so "started" means all made.
    script = f"for i in {sleeps}; do sleep 60 & done; echo started; sleep 60 & echo ELEVENTH"
    result = runtime.cli("run", "--rm", "--pids-limit", "10", *mode, pulled_base, "sh", "-c", script, check=False)
    assert "started" in result.stdout, result.stdout + result.stderr
    assert "ELEVENTH" not in result.stdout, "the 11th process should have been refused"
    assert "can't fork" in result.stderr or "Resource temporarily unavailable" in result.stderr, result.stderr


@pytest.mark.parametrize("network", ["none", "host"])
def test_exec_is_not_counted_beyond_its_own_process(runtime: Runtime, pulled_base: str, network: str) -> None:
    runtime.cli("run", "-d", "--name", "tight", "--pids-limit", "3", "--network", network, pulled_base, "sh", "-c",
                "echo ready; sleep 60; true")
    try:
        wait_ready(runtime, "tight")
        out = runtime.cli("exec", "tight", "cat", "/proc/self/cgroup").stdout
        assert runtime.cli("exec", "tight", "echo", "third").stdout.strip() == "third"
        assert runtime.cli("exec", "tight", "cat", "/proc/1/comm").stdout.strip() == "sh", "the container's pid ns"
        # The exec'd process is in the container's cgroups and cgroup namespace, whose root they are.
        lines = [line for line in out.splitlines() if ":pids:" in line or ":memory:" in line or line.startswith("0::")]
        assert lines and all(line.endswith(":/") for line in lines), out
    finally:
        runtime.cli("rm", "-f", "tight")


def test_only_the_workload_is_in_the_cgroups(runtime: Runtime, pulled_base: str) -> None:
    """The memory (and every other) cgroup holds exactly the container's processes: not the monitor, not stage,
    not exec's helper; so --memory has the headroom Docker gives."""
    runtime.cli("run", "-d", "--name", "mem", "--memory", "64m", pulled_base, "sh", "-c",
                "echo ready; sleep 60; true")
    execd = None
    try:
        wait_ready(runtime, "mem")
        state = inspect(runtime, "mem")
        execd = runtime.popen("exec", "mem", "sleep", "30")
        wait_for(lambda: len(host_pids_in_pid_namespace(state["init_pid"])) == 3, what="the exec'd sleep")
        container = host_pids_in_pid_namespace(state["init_pid"])
        members = cgroup_members(state["cgroups"]["dirs"])
        assert "memory" in members or "v2" in members
        for name, pids in members.items():
            assert pids == container, f"{name} cgroup holds {pids}, the container is {container}"
        helpers = {state["monitor_pid"], execd.pid}
        for parent in (state["monitor_pid"], execd.pid):  # stage; exec's helper
            helpers |= {int(p) for p in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()}
        assert len(helpers) == 4, helpers
        assert not helpers & container
        mem_dir = Path(state["cgroups"]["dirs"].get("memory") or state["cgroups"]["dirs"]["v2"])
        usage_file = mem_dir / ("memory.usage_in_bytes" if "memory" in state["cgroups"]["dirs"] else "memory.current")
        usage = int(usage_file.read_text())
        print(f"memory charged to the idle container (sh + sleep + exec'd sleep): {usage / 1e6:.2f} MB")
    finally:
        if execd is not None:
            execd.kill()
            execd.wait()
        runtime.cli("rm", "-f", "mem")
