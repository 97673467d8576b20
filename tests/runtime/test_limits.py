"""Acceptance 3: memory and pids limits, exit codes, stop's SIGTERM-then-SIGKILL, signal forwarding, reaping."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.runtime.conftest import Runtime
from tests.support import host


def inspect(runtime: Runtime, name: str) -> dict:
    return json.loads(runtime.cli("inspect", name).stdout)[0]


def wait_status(runtime: Runtime, name: str, status: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = inspect(runtime, name)
        if state["status"] == status or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


def _no_swap_beyond_memory() -> list[str]:
    """On v1 a memory limit does not bound swap (v2 gets memory.swap.max = memory from the runtime): where the host
    swaps, hold the container to its memory with --memory-swap, or the hog swaps instead of being killed."""
    if host.cgroups().place("memory") != "v1" or not host.swap_in_use():
        return []
    if not host.swap_accounting():
        pytest.skip("this host swaps and its v1 memory controller has no swap accounting (memory.memsw.*), so a "
                    "memory limit cannot stop a container from swapping instead of being OOM-killed")
    return ["--memory-swap", "32m"]


def test_memory_hog_is_oom_killed(runtime: Runtime, pulled_base: str) -> None:
    hog = "a=$(head -c 100000000 /dev/zero | tr '\\0' x); echo survived"
    result = runtime.cli("run", "--name", "hog", "--memory", "32m", *_no_swap_beyond_memory(), pulled_base,
                         "sh", "-c", hog, check=False, timeout=120)
    assert result.returncode == 137, result
    assert "survived" not in result.stdout
    state = inspect(runtime, "hog")
    assert state["exit_code"] == 137 and state["oom_killed"] is True


def test_memory_limit_is_in_the_cgroup(runtime: Runtime, pulled_base: str) -> None:
    swap = host.swap_accounting()
    limits = ["--memory", "32m", "--cpus", "0.5", "--cpu-shares", "512", "--pids-limit", "20"]
    if not swap:  # --memory-swap needs swap accounting: refused where the host has none
        refused = runtime.cli("run", "--rm", *limits, "--memory-swap", "64m", pulled_base, "true", check=False)
        assert refused.returncode == 125 and "--memory-swap needs swap accounting" in refused.stderr, refused.stderr
    runtime.cli("run", "-d", "--name", "memcg", *limits, *(["--memory-swap", "64m"] if swap else []),
                pulled_base, "sleep", "30")
    try:
        dirs = inspect(runtime, "memcg")["cgroups"]["dirs"]
        memory = Path(dirs["memory"]) / "memory.limit_in_bytes" if "memory" in dirs else Path(dirs["v2"]) / "memory.max"
        assert int(memory.read_text()) == 32 * 1024 * 1024
        pids = Path(dirs.get("pids") or dirs["v2"]) / "pids.max"
        assert pids.read_text().strip() == "20"
        if swap and "memory" in dirs:
            assert int((Path(dirs["memory"]) / "memory.memsw.limit_in_bytes").read_text()) == 64 * 1024 * 1024
        elif swap:  # v2: memory.swap.max is the swap beyond memory
            assert int((Path(dirs["v2"]) / "memory.swap.max").read_text()) == 32 * 1024 * 1024
        if "cpu" in dirs:
            assert (Path(dirs["cpu"]) / "cpu.cfs_quota_us").read_text().strip() == "50000"
            assert (Path(dirs["cpu"]) / "cpu.shares").read_text().strip() == "512"
        else:
            assert (Path(dirs["v2"]) / "cpu.max").read_text().split()[0] == "50000"
            assert (Path(dirs["v2"]) / "cpu.weight").read_text().strip() == "20"  # runc's mapping of 512 shares
    finally:
        runtime.cli("rm", "-f", "memcg")


def test_pids_limit_stops_a_fork_bomb(runtime: Runtime, pulled_base: str) -> None:
    runtime.cli("run", "-d", "--name", "bomb", "--pids-limit", "8", pulled_base, "sh", "-c",
                "bomb() { bomb | bomb & }; bomb; sleep 60")
    try:
        time.sleep(2)
        dirs = inspect(runtime, "bomb")["cgroups"]["dirs"]
        pids_dir = Path(dirs.get("pids") or dirs["v2"])
        assert int((pids_dir / "pids.current").read_text()) <= 8
        events = (pids_dir / "pids.events").read_text() if (pids_dir / "pids.events").exists() else "max 1"
        assert int(events.split()[-1]) > 0, "forks were refused"
    finally:
        runtime.cli("rm", "-f", "bomb", timeout=60)


def test_exit_codes(runtime: Runtime, pulled_base: str) -> None:
    assert runtime.cli("run", "--rm", pulled_base, "sh", "-c", "exit 3", check=False).returncode == 3
    assert runtime.cli("run", "--rm", pulled_base, "true").returncode == 0
    # A PID 1 cannot kill itself (the kernel drops such signals), so these run under --init, as in Docker;
    # tests/runtime/test_confinement.py kills a PID 1 from outside.
    assert runtime.cli("run", "--rm", "--init", pulled_base, "sh", "-c", "kill -9 $$",
                       check=False).returncode == 137
    assert runtime.cli("run", "--rm", "--init", pulled_base, "sh", "-c", "kill -TERM $$",
                       check=False).returncode == 143


def test_stop_sends_sigterm_first(runtime: Runtime, pulled_base: str) -> None:
    runtime.cli("run", "-d", "--name", "polite", pulled_base, "sh", "-c",
                "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.1; done")
    deadline = time.monotonic() + 10
    while "ready" not in runtime.cli("logs", "polite").stdout and time.monotonic() < deadline:
        time.sleep(0.1)
    started = time.monotonic()
    runtime.cli("stop", "-t", "10", "polite")
    assert time.monotonic() - started < 5
    state = inspect(runtime, "polite")
    assert state["status"] == "exited" and state["exit_code"] == 7
    assert "got-term" in runtime.cli("logs", "polite").stdout
    runtime.cli("rm", "polite")


def test_stop_escalates_to_sigkill(runtime: Runtime, pulled_base: str) -> None:
    runtime.cli("run", "-d", "--name", "stubborn", pulled_base, "sh", "-c",
                "trap '' TERM; echo ready; while true; do sleep 0.1; done")
    deadline = time.monotonic() + 10
    while "ready" not in runtime.cli("logs", "stubborn").stdout and time.monotonic() < deadline:
        time.sleep(0.1)
    started = time.monotonic()
    runtime.cli("stop", "-t", "1", "stubborn")
    elapsed = time.monotonic() - started
    assert 1 <= elapsed < 8, elapsed
    state = inspect(runtime, "stubborn")
    assert state["status"] == "exited" and state["exit_code"] == 137
    runtime.cli("rm", "stubborn")


def test_foreground_signals_reach_the_workload(runtime: Runtime, pulled_base: str) -> None:
    proc = runtime.popen("run", "--rm", pulled_base, "sh", "-c",
                         "trap 'echo term; exit 5' TERM; echo ready; while true; do sleep 0.1; done")
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 5, err
    assert "term" in out


def test_zombies_are_reaped(runtime: Runtime, pulled_base: str) -> None:
    script = ("for i in 1 2 3 4 5; do sh -c 'sleep 0.2 &'; done; sleep 1.5; "
              "for s in /proc/[0-9]*/stat; do read -r line < $s; set -- $line; echo \"$1 $3\"; done")
    out = runtime.cli("run", "--rm", pulled_base, "sh", "-c", script).stdout
    states = [line.split()[1] for line in out.splitlines() if line.strip()]
    assert states and "Z" not in states, out
