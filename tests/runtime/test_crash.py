"""Crash-safe lifecycle: SIGKILL at each point of the runtime's process chain (keeper -> monitor -> stage ->
PID 1, the foreground CLI, `registry start` itself) leaves state that ps, inspect, start, wait and rm tell
truthfully and agree on, restart policies hold, and nothing leaks (the autouse check in conftest.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.runtime.conftest import REPO, Runtime, inspect, wait_for


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def ps_line(runtime: Runtime, name: str, all_: bool = True) -> str:
    out = runtime.cli("ps", *(["-a"] if all_ else [])).stdout
    return next((line for line in out.splitlines() if line.rstrip().endswith(f"   {name}")), "")


def cli_with_kill_point(runtime: Runtime, point: str, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "registry", *map(str, args)], capture_output=True, text=True,
                          timeout=60, cwd=REPO, stdin=subprocess.DEVNULL,
                          env={**runtime.env, "REGISTRY_RUNTIME_KILL_POINT": point})


def assert_crashed_and_agreed(runtime: Runtime, name: str) -> None:
    """ps and inspect both say: exited, 137, killed with its monitor."""
    line = ps_line(runtime, name)
    state = inspect(runtime, name)
    assert "Exited (137)" in line, line
    assert state["status"] == "exited" and state["exit_code"] == 137, state
    assert "monitor was killed" in state["error"], state["error"]
    assert name not in runtime.cli("ps").stdout
    assert not alive(state["init_pid"])


def test_sigkill_monitor_is_recorded_by_the_keeper(runtime: Runtime, pulled_base: str) -> None:
    runtime.cli("run", "-d", "--name", "crash-mon", pulled_base, "sleep", "60")
    before = inspect(runtime, "crash-mon")
    assert alive(before["keeper_pid"]) and parent_of(before["monitor_pid"]) == before["keeper_pid"]
    os.kill(before["monitor_pid"], signal.SIGKILL)
    wait_for(lambda: not alive(before["keeper_pid"]), what="the keeper to record the crash and end")
    assert not alive(before["init_pid"])  # PDEATHSIG: the container went with its monitor
    assert_crashed_and_agreed(runtime, "crash-mon")
    assert runtime.cli("wait", "crash-mon").stdout.strip() == "137"
    assert not runtime.cgroup_dirs()
    runtime.cli("start", "crash-mon")
    assert inspect(runtime, "crash-mon")["status"] == "running"
    assert "Up " in ps_line(runtime, "crash-mon", all_=False)
    runtime.cli("rm", "-f", "crash-mon")


def test_sigkill_monitor_and_keeper_is_reconciled_by_the_next_command(runtime: Runtime, pulled_base: str) -> None:
    runtime.cli("run", "-d", "--name", "crash-both", pulled_base, "sleep", "60")
    before = inspect(runtime, "crash-both")
    os.kill(before["keeper_pid"], signal.SIGKILL)
    os.kill(before["monitor_pid"], signal.SIGKILL)
    wait_for(lambda: not alive(before["init_pid"]), what="the container to die with its monitor")
    assert runtime.cgroup_dirs()  # no one was left to remove them ...
    assert_crashed_and_agreed(runtime, "crash-both")
    assert not runtime.cgroup_dirs()  # ... until ps reconciled it
    assert runtime.cli("wait", "crash-both").stdout.strip() == "137"
    runtime.cli("start", "crash-both")  # no EEXIST on the old cgroups
    assert inspect(runtime, "crash-both")["status"] == "running"
    again = inspect(runtime, "crash-both")
    os.kill(again["keeper_pid"], signal.SIGKILL)
    os.kill(again["monitor_pid"], signal.SIGKILL)
    wait_for(lambda: not alive(again["init_pid"]), what="the container to die with its monitor")
    runtime.cli("restart", "-t", "1", "crash-both")  # restart too: reconciled, then started
    restarted = inspect(runtime, "crash-both")
    assert restarted["status"] == "running" and alive(restarted["init_pid"]) and restarted["error"] == ""
    runtime.cli("rm", "-f", "crash-both")


def test_leftover_cgroups_do_not_break_start(runtime: Runtime, pulled_base: str) -> None:
    """Cgroup directories of the id that no state names (a monitor killed before saving) are removed at start."""
    container_id = runtime.cli("create", "--name", "crash-stale", pulled_base, "sleep", "60").stdout.strip()
    from tests.support import host
    made = []
    for mount in host.cgroups().mount_points:
        leaf = mount / runtime.cgroup_parent / container_id
        if (mount / runtime.cgroup_parent).is_dir() or mount.name in ("memory", "pids"):
            leaf.mkdir(parents=True, exist_ok=True)
            made.append(leaf)
    assert made
    runtime.cli("start", "crash-stale")
    assert inspect(runtime, "crash-stale")["status"] == "running"
    runtime.cli("rm", "-f", "crash-stale")


def test_sigkill_monitor_with_restart_always_restarts(runtime: Runtime, pulled_base: str) -> None:
    runtime.cli("run", "-d", "--name", "crash-always", "--restart", "always", pulled_base, "sleep", "60")
    before = inspect(runtime, "crash-always")
    os.kill(before["monitor_pid"], signal.SIGKILL)

    def restarted() -> bool:
        now = inspect(runtime, "crash-always")
        return now["status"] == "running" and now["restarts"] == 1 and alive(now["init_pid"]) \
            and now["monitor_pid"] != before["monitor_pid"]
    wait_for(restarted, what="the keeper to restart the container")
    after = inspect(runtime, "crash-always")
    assert after["keeper_pid"] == before["keeper_pid"] and not alive(before["init_pid"])
    assert "Up " in ps_line(runtime, "crash-always", all_=False)
    assert runtime.cli("exec", "crash-always", "true", check=False).returncode == 0
    runtime.cli("stop", "-t", "2", "crash-always")  # and stop still stops it for good
    assert inspect(runtime, "crash-always")["status"] == "exited"
    assert not alive(after["keeper_pid"])
    runtime.cli("rm", "crash-always")


def test_sigkill_monitor_with_restart_on_failure_restarts_within_its_limit(runtime: Runtime,
                                                                        pulled_base: str) -> None:
    runtime.cli("run", "-d", "--name", "crash-onfail", "--restart", "on-failure:1", pulled_base, "sleep", "60")
    first = inspect(runtime, "crash-onfail")
    os.kill(first["monitor_pid"], signal.SIGKILL)
    wait_for(lambda: inspect(runtime, "crash-onfail")["restarts"] == 1
             and inspect(runtime, "crash-onfail")["status"] == "running", what="one restart")
    second = inspect(runtime, "crash-onfail")
    os.kill(second["monitor_pid"], signal.SIGKILL)  # the limit (1) is spent: recorded, not restarted
    wait_for(lambda: not alive(second["keeper_pid"]), what="the keeper to give up")
    assert_crashed_and_agreed(runtime, "crash-onfail")
    assert inspect(runtime, "crash-onfail")["restarts"] == 1
    runtime.cli("rm", "crash-onfail")


def test_sigkill_stage(runtime: Runtime, pulled_base: str) -> None:
    runtime.cli("run", "-d", "--name", "crash-stage", pulled_base, "sleep", "60")
    before = inspect(runtime, "crash-stage")
    stage = parent_of(before["init_pid"])
    assert parent_of(stage) == before["monitor_pid"]
    os.kill(stage, signal.SIGKILL)
    wait_for(lambda: inspect(runtime, "crash-stage")["status"] == "exited", what="the monitor to record it")
    assert "Exited (137)" in ps_line(runtime, "crash-stage")
    assert inspect(runtime, "crash-stage")["exit_code"] == 137
    assert not alive(before["init_pid"])
    runtime.cli("start", "crash-stage")
    runtime.cli("rm", "-f", "crash-stage")


def test_sigkill_foreground_run_takes_the_container(runtime: Runtime, pulled_base: str) -> None:
    cli = runtime.popen("run", "--name", "crash-fg", pulled_base, "sleep", "60")
    try:
        wait_for(lambda: (runtime.root / "containers").is_dir() and "Up " in ps_line(runtime, "crash-fg"),
                 what="the foreground container to run")
        before = inspect(runtime, "crash-fg")
        assert before["monitor_pid"] == cli.pid and before["keeper_pid"] is None
        cli.kill()
        cli.wait(10)
    finally:
        if cli.poll() is None:
            cli.kill()
        cli.communicate()
    wait_for(lambda: not alive(before["init_pid"]), what="the container to die with its CLI")  # no orphan
    assert_crashed_and_agreed(runtime, "crash-fg")
    assert not runtime.cgroup_dirs()
    runtime.cli("rm", "crash-fg")


def test_sigkill_foreground_run_rm_removes_it_at_the_next_look(runtime: Runtime, pulled_base: str) -> None:
    """--rm holds after a crash: the next command that looks removes the container and its volumes."""
    cli = runtime.popen("run", "--rm", "--name", "crash-rm", "-v", "/scratch", pulled_base, "sleep", "60")
    try:
        wait_for(lambda: (runtime.root / "containers").is_dir() and "Up " in ps_line(runtime, "crash-rm"),
                 what="the foreground container to run")
        volume = Path(inspect(runtime, "crash-rm")["spec"]["volumes"][0][0]).parent
        cli.kill()
        cli.wait(10)
    finally:
        if cli.poll() is None:
            cli.kill()
        cli.communicate()
    wait_for(lambda: "crash-rm" not in runtime.cli("ps", "-a").stdout, what="ps to remove it")
    assert not volume.exists() and not runtime.cgroup_dirs()


def test_sigkill_registry_start_right_after_fork(runtime: Runtime, pulled_base: str) -> None:
    """The CLI dies, the detached keeper and monitor it forked carry on: the container runs, and says so."""
    runtime.cli("create", "--name", "crash-cli", pulled_base, "sleep", "60")
    killed = cli_with_kill_point(runtime, "start-forked", "start", "crash-cli")
    assert killed.returncode == -signal.SIGKILL
    wait_for(lambda: inspect(runtime, "crash-cli")["status"] == "running", what="the container to start")
    assert "Up " in ps_line(runtime, "crash-cli", all_=False)
    runtime.cli("rm", "-f", "crash-cli")


def test_sigkill_monitor_mid_start(runtime: Runtime, pulled_base: str) -> None:
    """Killed after making its cgroups, before saving them: the keeper cleans up and says why; start works."""
    runtime.cli("create", "--name", "crash-mid", pulled_base, "sleep", "60")
    failed = cli_with_kill_point(runtime, "cgroups-created", "start", "crash-mid")
    assert failed.returncode == 1 and "monitor died" in failed.stderr, failed.stderr
    wait_for(lambda: not runtime.cgroup_dirs(), what="the keeper's clean-up")
    state = inspect(runtime, "crash-mid")
    assert state["status"] == "exited" and state["exit_code"] == 137 and "while starting" in state["error"]
    assert "Exited (137)" in ps_line(runtime, "crash-mid")
    runtime.cli("start", "crash-mid")
    assert inspect(runtime, "crash-mid")["status"] == "running"
    runtime.cli("rm", "-f", "crash-mid")


def test_sigkill_monitor_and_keeper_mid_start(runtime: Runtime, pulled_base: str) -> None:
    """Both killed with cgroups made and not recorded: nothing breaks the next start, and rm removes all."""
    runtime.cli("create", "--name", "crash-mid2", pulled_base, "sleep", "60")
    failed = cli_with_kill_point(runtime, "cgroups-created:group", "start", "crash-mid2")
    assert failed.returncode == 1 and "monitor died" in failed.stderr, failed.stderr
    assert runtime.cgroup_dirs()  # left behind, named by no state
    assert "Created" in ps_line(runtime, "crash-mid2")
    runtime.cli("start", "crash-mid2")
    assert inspect(runtime, "crash-mid2")["status"] == "running"
    runtime.cli("rm", "-f", "crash-mid2")


def test_sigkill_exec_leaves_the_container_running(runtime: Runtime, pulled_base: str) -> None:
    runtime.cli("run", "-d", "--name", "crash-exec", pulled_base, "sleep", "60")
    cli = runtime.popen("exec", "crash-exec", "sleep", "30")
    try:
        wait_for(lambda: "sleep 30" in runtime.cli("top", "crash-exec").stdout, what="the exec'd process")
        cli.kill()
        cli.wait(10)
    finally:
        if cli.poll() is None:
            cli.kill()
        # Not communicate(): the exec'd `sleep 30` may still hold the pipes' other ends, and would keep it
        # waiting the 30 s out.
        for pipe in (cli.stdout, cli.stderr):
            assert pipe is not None
            pipe.close()
    state = inspect(runtime, "crash-exec")
    assert state["status"] == "running" and alive(state["init_pid"])
    assert "Up " in ps_line(runtime, "crash-exec", all_=False)
    runtime.cli("rm", "-f", "crash-exec")


def test_exec_into_a_paused_container(runtime: Runtime, pulled_base: str) -> None:
    runtime.cli("run", "-d", "--name", "crash-paused", pulled_base, "sleep", "60")
    runtime.cli("pause", "crash-paused")
    refused = runtime.cli("exec", "crash-paused", "true", check=False)
    assert refused.returncode == 1, refused
    assert "container crash-paused is paused, unpause it first" in refused.stderr, refused.stderr
    runtime.cli("unpause", "crash-paused")
    assert runtime.cli("exec", "crash-paused", "true", check=False).returncode == 0
    runtime.cli("rm", "-f", "crash-paused")


def test_sigkill_monitor_and_keeper_of_a_bridged_container(runtime: Runtime, pulled_base: str) -> None:
    """The veth goes with the namespace; the bridge, its NAT and the published port are reconciled away."""
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    runtime.cli("run", "-d", "--name", "crash-net", "--network", "bridge", "-p", f"127.0.0.1:{port}:8080",
                pulled_base, "sleep", "60")
    before = inspect(runtime, "crash-net")
    bridge = before["network"]["bridge"]
    os.kill(before["keeper_pid"], signal.SIGKILL)
    os.kill(before["monitor_pid"], signal.SIGKILL)
    wait_for(lambda: not alive(before["init_pid"]), what="the container to die with its monitor")
    assert_crashed_and_agreed(runtime, "crash-net")
    assert not os.path.exists(f"/sys/class/net/{bridge}"), "the bridge outlived its last container"
    runtime.cli("start", "crash-net")  # the port is free again, the bridge comes back
    assert inspect(runtime, "crash-net")["status"] == "running"
    runtime.cli("rm", "-f", "crash-net")


def test_a_reused_pid_is_not_the_monitor() -> None:
    """After a reboot the recorded pids may belong to other processes: the start time tells them apart."""
    from registry.runtime.state import Spec, State, started_at

    state = State(id="0" * 64, name="x", spec=Spec(image="i", image_digest="d", lowers=[], args=["true"], env=[],
                                                    cwd="/", user="0", hostname="h"))
    assert not state.monitor_alive()
    state.set_monitor()
    assert state.monitor_alive() and state.monitor_since == started_at(os.getpid())
    state.monitor_since = (state.monitor_since or 0) + 1  # this pid, but not the process that was the monitor
    assert not state.monitor_alive()
    state.keeper_pid, state.keeper_since = os.getpid(), None  # records from before the start times: pid only
    assert state.monitor_alive()


def test_two_starts_at_once_start_it_once(runtime: Runtime, pulled_base: str) -> None:
    """The second start waits for the first and then finds it running: it never removes the first's cgroups."""
    runtime.cli("create", "--name", "twice", pulled_base, "sleep", "60")
    try:
        starts = [runtime.popen("start", "twice") for _ in range(2)]
        results = [(p.wait(60), p.communicate()) for p in starts]
        codes = sorted(code for code, _ in results)
        assert codes == [0, 1], results
        assert any("already running" in err for _, (_, err) in results), results
        state = inspect(runtime, "twice")
        assert state["status"] == "running" and alive(state["init_pid"])
        assert "Up " in ps_line(runtime, "twice", all_=False)
    finally:
        runtime.cli("rm", "-f", "twice", check=False)
