"""The container and image verbs: create/start, run -d, ps, logs -f, exec, kill, pause/unpause, restart policy,
rm, images, history, inspect, rmi; limits the host cannot honour are errors."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from registry.runtime.observe import decimal_size
from tests.runtime import images as im
from tests.runtime.conftest import Runtime, inspect, wait_for
from tests.support import host


WAIT = 15  # seconds each wait_for here allows (the conftest default is 20)


def test_create_start_ps_logs_rm(runtime: Runtime, pulled_base: str) -> None:
    container_id = runtime.cli("create", "--name", "later", pulled_base, "sh", "-c", "echo out; echo err >&2").stdout.strip()
    assert len(container_id) == 64
    assert "Created" in runtime.cli("ps", "-a").stdout
    runtime.cli("start", "later")
    wait_for(lambda: inspect(runtime, "later")["status"] == "exited", timeout=WAIT, what="exit")
    assert runtime.cli("logs", "later").stdout == "out\nerr\n"
    assert "later" not in runtime.cli("ps").stdout
    assert "Exited (0)" in runtime.cli("ps", "-a").stdout
    runtime.cli("start", container_id[:12])  # again, by id prefix
    wait_for(lambda: runtime.cli("logs", "later").stdout.count("out") == 2, timeout=WAIT, what="second run")
    runtime.cli("rm", "later")
    assert "later" not in runtime.cli("ps", "-a").stdout
    assert not (runtime.root / "containers" / container_id).exists()


def test_run_detached_exec_pause_kill(runtime: Runtime, pulled_base: str) -> None:
    runtime.cli("run", "-d", "--name", "svc", "-e", "FOO=bar", pulled_base, "sh", "-c",
                "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.1; done")
    try:
        assert "svc" in runtime.cli("ps").stdout
        exec_out = runtime.cli("exec", "-e", "X=1", "svc", "sh", "-c", "echo $FOO $X; echo $$; hostname; id -u").stdout
        lines = exec_out.split()
        assert lines[:2] == ["bar", "1"] and int(lines[2]) > 2
        assert lines[3] == inspect(runtime, "svc")["spec"]["hostname"]
        assert runtime.cli("exec", "svc", "sh", "-c", "exit 4", check=False).returncode == 4
        runtime.cli("pause", "svc")
        assert "(Paused)" in runtime.cli("ps").stdout
        frozen = runtime.cli("logs", "svc").stdout.count("tick")
        time.sleep(0.6)
        assert runtime.cli("logs", "svc").stdout.count("tick") <= frozen + 1
        runtime.cli("unpause", "svc")
        wait_for(lambda: runtime.cli("logs", "svc").stdout.count("tick") > frozen + 2, timeout=WAIT, what="ticks after unpause")
        runtime.cli("kill", "svc")
        wait_for(lambda: inspect(runtime, "svc")["status"] == "exited", timeout=WAIT, what="kill")
        assert inspect(runtime, "svc")["exit_code"] == 137
    finally:
        runtime.cli("rm", "-f", "svc")


def test_logs_follow_ends_with_the_container(runtime: Runtime, pulled_base: str) -> None:
    runtime.cli("run", "-d", "--name", "short", pulled_base, "sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.3; done")
    follow = runtime.cli("logs", "-f", "short", timeout=30)
    assert follow.stdout.split() == ["line1", "line2", "line3"]
    runtime.cli("rm", "short")


def test_rm_refuses_a_running_container_without_force(runtime: Runtime, pulled_base: str) -> None:
    runtime.cli("run", "-d", "--name", "busy", pulled_base, "sleep", "60")
    refused = runtime.cli("rm", "busy", check=False)
    assert refused.returncode != 0 and "rm -f" in refused.stderr
    runtime.cli("rm", "-f", "busy")


def test_detached_rm_removes_itself(runtime: Runtime, pulled_base: str) -> None:
    container_id = runtime.cli("run", "-d", "--rm", pulled_base, "true").stdout.strip()
    wait_for(lambda: not (runtime.root / "containers" / container_id).exists(), timeout=WAIT, what="auto remove")


def test_restart_on_failure(runtime: Runtime, pulled_base: str) -> None:
    runtime.cli("run", "-d", "--name", "flaky", "--restart", "on-failure:2", pulled_base, "sh", "-c", "echo try; exit 1")
    wait_for(lambda: inspect(runtime, "flaky")["status"] == "exited" and inspect(runtime, "flaky")["restarts"] == 2,
             timeout=WAIT, what="two restarts")
    assert runtime.cli("logs", "flaky").stdout.count("try") == 3
    runtime.cli("rm", "flaky")


def test_restart_always_stops_on_stop(runtime: Runtime, pulled_base: str) -> None:
    runtime.cli("run", "-d", "--name", "forever", "--restart", "always", pulled_base, "sh", "-c", "sleep 0.2")
    wait_for(lambda: inspect(runtime, "forever")["restarts"] >= 2, timeout=WAIT, what="restarts")
    runtime.cli("stop", "-t", "2", "forever")
    assert inspect(runtime, "forever")["status"] == "exited"
    runtime.cli("rm", "forever")


def test_limits_a_host_cannot_honour_are_errors() -> None:
    from registry.runtime.cgroups import CgroupError, ContainerCgroups, Hierarchies, Resources

    bare = Hierarchies(v2_root=None, v2_controllers=set(), v1={})
    for resources in (Resources(memory=1 << 25), Resources(pids_limit=8), Resources(cpus=0.5),
                      Resources(blkio_weight=300)):
        try:
            ContainerCgroups.create("x" * 64, resources, bare)
        except CgroupError as exc:
            assert "not available" in str(exc)
        else:
            raise AssertionError(f"{resources} accepted without a controller")


def test_blkio_weight_lands_in_the_hosts_weight_file(runtime: Runtime, pulled_base: str) -> None:
    weight_file = host.io_weight_file()
    if weight_file is None:
        pytest.skip(f"no block I/O weight here: {host.io_weight_absence()}; "
                    "test_blkio_weight_is_refused_where_the_host_has_none checks the refusal")
    runtime.cli("run", "-d", "--name", "weighted", "--blkio-weight", "300", pulled_base, "sleep", "30")
    try:
        dirs = inspect(runtime, "weighted")["cgroups"]["dirs"]
        leaf = Path(dirs["blkio"] if host.cgroups().place("io") == "v1" else dirs["v2"])
        assert (leaf / weight_file).read_text().split()[-1] == "300"  # "300" (v1) or "default 300" (v2, BFQ)
    finally:
        runtime.cli("rm", "-f", "weighted")


def test_blkio_weight_is_refused_where_the_host_has_none(runtime: Runtime, pulled_base: str) -> None:
    """A limit the host cannot honour is an error (not Docker's warning and a silent drop), and the failed start
    leaves no cgroup, mount or process behind."""
    if host.io_weight_file() is not None:
        pytest.skip(f"this host has {host.io_weight_file()}: test_blkio_weight_lands_in_the_hosts_weight_file "
                    "checks it is used")
    expected = "--blkio-weight needs" if host.cgroups().place("io") else "the io cgroup controller is not available"
    foreground = runtime.cli("run", "--rm", "--blkio-weight", "300", pulled_base, "echo", "RAN", check=False)
    assert foreground.returncode == 125 and expected in foreground.stderr, foreground.stderr
    assert "RAN" not in foreground.stdout and "Traceback" not in foreground.stderr
    assert runtime.cli("ps", "-aq").stdout.strip() == "", "--rm removes the container that could not start"
    detached = runtime.cli("run", "-d", "--name", "weighted", "--blkio-weight", "300", pulled_base, "sleep", "30",
                           check=False)
    assert detached.returncode == 125 and expected in detached.stderr, detached.stderr
    try:
        state = inspect(runtime, "weighted")  # kept with its error, as docker keeps one whose start failed
        assert state["status"] == "exited" and state["exit_code"] == 125 and state["started"] is None
        assert expected in state["error"] and state["cgroups"] == {}
        assert runtime.cgroup_dirs() == [] and runtime.processes() == [] and runtime.mounts() == []
    finally:
        runtime.cli("rm", "-f", "weighted")
    assert not (runtime.root / "containers" / state["id"]).exists()


def test_bad_combinations_are_refused(runtime: Runtime, pulled_base: str) -> None:
    for args, message in ((["--rm", "--restart", "always"], "detached"),
                          (["-d", "--rm", "--restart", "always"], "cannot be combined"),
                          (["--memory-swap", "64m"], "--memory-swap needs --memory"),
                          (["--memory", "64mb", "--memory-swap", "32mb"], "must be at least --memory")):
        bad = runtime.cli("run", *args, pulled_base, "echo", "RAN", check=False)
        assert bad.returncode == 125 and message in bad.stderr, (args, bad.stderr)
        assert "RAN" not in bad.stdout
    assert runtime.cli("ps", "-aq").stdout.strip() == "", "a refused run creates no container"


def test_device_read_and_write_rates_are_set(runtime: Runtime, pulled_base: str) -> None:
    """--device-read/write-bps (sizes) and --device-read/write-iops (operations a second), as docker's."""
    device = host.block_device()
    if device is None:
        pytest.skip("no block device on this host to name in a throttle rule (/sys/block lists none with a /dev node)")
    for bad in (f"{device}:1m", f"{device}:-5", f"{device}:٣", "sda:100", f"{device}:"):
        refused = runtime.cli("run", "--rm", "--device-read-iops", bad, pulled_base, "true", check=False)
        assert refused.returncode == 2 and "invalid device rate" in refused.stderr, bad
    rates = ["--device-read-bps", f"{device}:1m", "--device-write-bps", f"{device}:2m",
             "--device-read-iops", f"{device}:300", "--device-write-iops", f"{device}:400"]
    if host.cgroups().place("io") is None:
        refused = runtime.cli("run", "--rm", *rates, pulled_base, "true", check=False)
        assert refused.returncode == 125 and "io cgroup controller is not available" in refused.stderr
        return
    runtime.cli("run", "-d", "--name", "io", *rates, pulled_base, "sleep", "30")
    try:
        dirs = inspect(runtime, "io")["cgroups"]["dirs"]
        major_minor = f"{os.major(os.stat(device).st_rdev)}:{os.minor(os.stat(device).st_rdev)}"
        if host.cgroups().place("io") == "v1":
            read = (Path(dirs["blkio"]) / "blkio.throttle.read_bps_device").read_text().split()
            write = (Path(dirs["blkio"]) / "blkio.throttle.write_bps_device").read_text().split()
            assert read == [major_minor, str(1 << 20)] and write == [major_minor, str(2 << 20)]
            read_iops = (Path(dirs["blkio"]) / "blkio.throttle.read_iops_device").read_text().split()
            write_iops = (Path(dirs["blkio"]) / "blkio.throttle.write_iops_device").read_text().split()
            assert read_iops == [major_minor, "300"] and write_iops == [major_minor, "400"]
        else:
            line = next(x for x in (Path(dirs["v2"]) / "io.max").read_text().splitlines() if x.startswith(major_minor))
            assert f"rbps={1 << 20}" in line and f"wbps={2 << 20}" in line
            assert "riops=300" in line and "wiops=400" in line
    finally:
        runtime.cli("rm", "-f", "io")


def test_images_history_inspect_rmi(runtime: Runtime) -> None:
    name = f"rt-{uuid.uuid4().hex[:8]}/hist"
    layers = [im.layer(im.busybox_entries()), im.layer([im.file("a.txt", "a\n")], "zstd")]
    image = im.push(runtime.registry.url, name, "v2", layers, {"Cmd": ["sh"]},
                    history=[{"created_by": "COPY busybox /"}, {"created_by": "CMD sh", "empty_layer": True},
                             {"created_by": "COPY a.txt /"}])
    runtime.cli("pull", image.reference)
    listing = runtime.cli("images").stdout
    assert f"{image.reference.rsplit(':', 1)[0]}" in listing and "v2" in listing
    row = next(line for line in listing.splitlines() if image.reference.rsplit(":", 1)[0] in line)
    assert row.split()[-1] == decimal_size(sum(len(layer.blob) for layer in layers)), row  # never "0.0MB"
    history = runtime.cli("history", image.reference).stdout.splitlines()
    assert "COPY a.txt /" in history[1] and im.sha256(layers[1].blob) in history[1]
    assert "CMD sh" in history[2] and "0B" in history[2]
    assert im.sha256(layers[0].blob) in history[3] and f"{len(layers[0].blob)}B" in history[3]
    info = inspect(runtime, image.reference)
    assert info["digest"] == image.digest and len(info["layers"]) == 2
    zstd_dir = runtime.root / "layers" / layers[1].diff_id.split(":")[1]
    assert zstd_dir.is_dir()
    runtime.cli("rmi", image.reference)
    assert image.reference not in runtime.cli("images").stdout
    assert not zstd_dir.exists(), "a layer no image uses any more is deleted"


def test_rm_cleans_up_after_a_killed_monitor(runtime: Runtime, pulled_base: str) -> None:
    """kill -9 of the monitor takes the container with it (parent-death signal); rm removes what is left."""
    import os
    import signal

    runtime.cli("run", "-d", "--name", "orphan", "--network", "bridge", "--memory", "64m", pulled_base, "sleep", "60")
    state = inspect(runtime, "orphan")
    os.kill(state["monitor_pid"], signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{state['init_pid']}").exists(), timeout=WAIT, what="the container to die with its monitor")
    assert "Exited" in runtime.cli("ps", "-a").stdout
    runtime.cli("rm", "orphan")
    for directory in state["cgroups"]["dirs"].values():
        assert not Path(directory).exists()
    assert state["network"]["host_if"] not in os.listdir("/sys/class/net")
