"""-t and -it: a terminal from the container's own devpts for run (foreground and detached) and exec."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

from tests.runtime.conftest import REPO, Runtime


def test_run_t_gives_a_container_terminal(runtime: Runtime, pulled_base: str) -> None:
    out = runtime.cli("run", "--rm", "-t", pulled_base, "sh", "-c", "tty; readlink /proc/self/fd/1").stdout
    assert out.replace("\r", "").split() == ["/dev/pts/0", "/dev/pts/0"]


def test_term_is_set_with_t_unless_given(runtime: Runtime, pulled_base: str) -> None:
    """As Docker: TERM=xterm with -t, the caller's -e TERM wins, and without -t there is none."""
    def term(*flags: str) -> str:
        return runtime.cli("run", "--rm", *flags, pulled_base, "sh", "-c", 'echo "[$TERM]"').stdout.strip()

    assert term("-t") == "[xterm]"
    assert term("-t", "-e", "TERM=vt100") == "[vt100]"
    assert term() == "[]"


def test_run_it_is_interactive(runtime: Runtime, pulled_base: str) -> None:
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "registry", "run", "--rm", "-it", pulled_base, "sh"],
                            stdin=slave, stdout=slave, stderr=slave, env=runtime.env, cwd=REPO,
                            start_new_session=True)
    os.close(slave)
    output = b""
    try:
        os.write(master, b"echo hi-$((40+2)); tty; exit 3\n")
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    output += os.read(master, 4096)
                except OSError:
                    break
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    text = output.decode(errors="replace")
    assert proc.returncode == 3, text
    assert "hi-42" in text and "/dev/pts/0" in text


def test_detached_t_logs_and_exec_t(runtime: Runtime, pulled_base: str) -> None:
    runtime.cli("run", "-d", "-t", "--name", "term", pulled_base, "sh", "-c", "tty; sleep 30")
    try:
        deadline = time.monotonic() + 10
        while "/dev/pts/0" not in runtime.cli("logs", "term").stdout and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "/dev/pts/0" in runtime.cli("logs", "term").stdout
        out = runtime.cli("exec", "-t", "term", "sh", "-c", "tty; echo TERM=$TERM; exit 5", check=False)
        assert out.returncode == 5
        lines = out.stdout.replace("\r", "").split()
        assert lines[0].startswith("/dev/pts/") and lines[0] != "/dev/pts/0"
        assert lines[1] == "TERM=xterm"
    finally:
        runtime.cli("rm", "-f", "term")
