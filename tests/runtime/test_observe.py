"""The verbs that look at containers, against Docker's documented behaviour: `wait` (blocks, prints the
exit code), `top` (host ps rows of the container's processes only), `stats --no-stream` (Docker's
columns, from the container's cgroups), `port` (`80/tcp -> HOST:PORT`, or one port's addresses), and
`restart` (stop with -t, then start; a new PID 1, the same container). Exit 1 with one line for a
container that is missing or not running, as docker's client."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time


from registry.runtime.observe import binary_size, decimal_size
from tests.runtime.conftest import REPO, Runtime


def _inspect(runtime: Runtime, name: str) -> dict:
    return json.loads(runtime.cli("inspect", name).stdout)[0]


def test_wait_blocks_until_exit_and_prints_each_code(runtime: Runtime, pulled_base: str) -> None:
    runtime.cli("run", "-d", "--name", "waited", pulled_base, "sh", "-c", "sleep 1; exit 3")
    runtime.cli("create", "--name", "quick", pulled_base, "sh", "-c", "exit 0")
    try:
        started = time.monotonic()
        waiter = runtime.popen("wait", "waited")
        runtime.cli("start", "quick")
        out, err = waiter.communicate(timeout=60)
        assert waiter.returncode == 0, err
        assert out == "3\n" and time.monotonic() - started >= 0.5
        assert runtime.cli("wait", "quick", "waited").stdout == "0\n3\n"  # stopped ones answer at once
        missing = runtime.cli("wait", "nosuch", check=False)
        assert missing.returncode == 1 and "no such container" in missing.stderr
    finally:
        runtime.cli("rm", "-f", "waited", "quick", check=False)


def test_top_lists_only_the_container_processes(runtime: Runtime, pulled_base: str) -> None:
    runtime.cli("run", "-d", "--name", "topped", pulled_base, "sh", "-c", "sleep 1001 & sleep 1002 & wait")
    try:
        deadline = time.monotonic() + 15
        while "sleep 1002" not in (out := runtime.cli("top", "topped").stdout) and time.monotonic() < deadline:
            time.sleep(0.1)
        header, *rows = out.splitlines()
        assert header.split()[:3] == ["UID", "PID", "PPID"] and "CMD" in header
        commands = [row.split(None, 7)[-1] for row in rows]
        assert any("sleep 1001" in c for c in commands) and any("sleep 1002" in c for c in commands)
        assert not any("pytest" in c or "registry" in c.split()[0] for c in commands if c), commands
        # ps options pass through, as `docker top CONTAINER aux`; -o with a PID column works too
        custom = runtime.cli("top", "topped", "-o", "pid,comm").stdout.splitlines()
        assert custom[0].split() == ["PID", "COMMAND"] and sum("sleep" in line for line in custom) == 2
        runtime.cli("stop", "-t", "1", "topped")
        stopped = runtime.cli("top", "topped", check=False)
        assert stopped.returncode == 1 and "not running" in stopped.stderr
    finally:
        runtime.cli("rm", "-f", "topped", check=False)


def test_stats_no_stream_shows_docker_columns(runtime: Runtime, pulled_base: str) -> None:
    runtime.cli("run", "-d", "--name", "busy", "--memory", "64mb", "--pids-limit", "20", pulled_base, "sh", "-c",
                "while :; do :; done & sleep 1000 & wait")
    try:
        out = runtime.cli("stats", "--no-stream", "busy").stdout.splitlines()
        assert re.split(r"\s{2,}", out[0]) == ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %",
                                              "NET I/O", "BLOCK I/O", "PIDS"]
        (row,) = out[1:]
        cells = re.split(r"\s{2,}", row)
        assert cells[0] == _inspect(runtime, "busy")["id"][:12] and cells[1] == "busy"
        assert float(cells[2].rstrip("%")) > 20, "a busy loop uses a good part of a core"
        usage, limit = cells[3].split(" / ")
        assert limit == "64MiB" and usage.endswith(("B", "KiB", "MiB"))
        assert int(cells[7]) >= 3  # sh, the loop's subshell, sleep
    finally:
        runtime.cli("rm", "-f", "busy", check=False)
    gone = runtime.cli("stats", "--no-stream", "busy", check=False)
    assert gone.returncode == 1 and "no such container" in gone.stderr


def test_stats_streams_until_interrupted(runtime: Runtime, pulled_base: str) -> None:
    runtime.cli("run", "-d", "--name", "streamed", pulled_base, "sleep", "1000")
    try:
        process = subprocess.Popen([sys.executable, "-m", "registry", "stats", "streamed"], env=runtime.env, cwd=REPO,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(3.5)
        process.terminate()
        out, _ = process.communicate(timeout=30)
        assert out.count("CONTAINER ID") >= 2 and out.count("streamed") >= 2  # a new table each second
    finally:
        runtime.cli("rm", "-f", "streamed", check=False)


def test_port_lists_published_ports(runtime: Runtime, pulled_base: str) -> None:
    runtime.cli("run", "-d", "--name", "ported", "--network", "bridge", "-p", "18431:80", pulled_base, "sleep", "1000")
    runtime.cli("run", "-d", "--name", "closed", pulled_base, "sleep", "1000")
    try:
        lines = runtime.cli("port", "ported").stdout.splitlines()
        assert len(lines) == 1 and re.fullmatch(r"80/tcp -> [0-9.]+:18431", lines[0]), lines
        only = runtime.cli("port", "ported", "80/tcp").stdout.strip()
        assert only == lines[0].split(" -> ")[1] == runtime.cli("port", "ported", "80").stdout.strip()
        unpublished = runtime.cli("port", "ported", "81", check=False)
        assert unpublished.returncode == 1 and "no public port '81/tcp'" in unpublished.stderr
        assert runtime.cli("port", "closed").stdout == ""
    finally:
        runtime.cli("rm", "-f", "ported", "closed", check=False)


def test_restart_gives_a_new_process_in_the_same_container(runtime: Runtime, pulled_base: str) -> None:
    runtime.cli("run", "-d", "--name", "again", pulled_base, "sh", "-c", "echo start; trap 'exit 0' TERM; "
                "while :; do sleep 0.1; done")
    try:
        first = _inspect(runtime, "again")
        started = time.monotonic()
        assert runtime.cli("restart", "-t", "5", "again").stdout == "again\n"
        assert time.monotonic() - started < 5, "the trap ends it on SIGTERM: no need to wait for SIGKILL"
        second = _inspect(runtime, "again")
        assert second["id"] == first["id"] and second["status"] == "running"
        assert second["init_pid"] != first["init_pid"]
        deadline = time.monotonic() + 15
        while runtime.cli("logs", "again").stdout.count("start") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert runtime.cli("logs", "again").stdout.count("start") == 2
        runtime.cli("stop", "-t", "1", "again")
        assert runtime.cli("restart", "again").stdout == "again\n"  # a stopped container starts again
        assert _inspect(runtime, "again")["status"] == "running"
    finally:
        runtime.cli("rm", "-f", "again", check=False)


def test_sizes_as_docker_stats_prints_them() -> None:
    assert binary_size(0) == "0B" and binary_size(1536) == "1.5KiB" and binary_size(64 * 2 ** 20) == "64MiB"
    assert decimal_size(999) == "999B" and decimal_size(1200) == "1.2kB" and decimal_size(3.5e9) == "3.5GB"


def test_ps_shows_the_reference_a_container_was_started_from(runtime: Runtime, base_image) -> None:  # type: ignore[no-untyped-def]
    """The same digest pulled under two names: ps shows the one the container was started from."""
    from tests.runtime import images as im

    twin = im.push(runtime.registry.url, base_image.reference.split("/", 1)[1].rsplit("/", 1)[0] + "/twin", "v1",
                   [im.layer(im.busybox_entries())], {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]})
    assert twin.digest == base_image.digest, "the same layers and config make the same manifest"
    runtime.cli("pull", base_image.reference)
    runtime.cli("pull", twin.reference)
    runtime.cli("run", "-d", "--name", "first-name", base_image.reference, "sleep", "1000")
    try:
        row = [line for line in runtime.cli("ps").stdout.splitlines() if "first-name" in line]
        assert row and base_image.reference in row[0] and twin.reference not in row[0]
    finally:
        runtime.cli("rm", "-f", "first-name", check=False)
