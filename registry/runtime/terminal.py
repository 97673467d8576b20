"""`-t`: a pseudo-terminal from the container's own devpts (so `tty` inside says /dev/pts/0), its master
handed to the monitor over a unix socket, and relayed to the caller's terminal in raw mode."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import socket
import struct
import termios
import threading
import tty

TYPE_CHECKING = False  # typing costs milliseconds of every container start; annotations only
if TYPE_CHECKING:
    from collections.abc import Iterator

_TIOCGPTN, _TIOCSPTLCK = 0x80045430, 0x40045431


def open_pty() -> tuple[int, int]:
    """(master, slave) from /dev/ptmx of the current mount namespace."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
    number = struct.unpack("I", fcntl.ioctl(master, _TIOCGPTN, struct.pack("I", 0)))[0]
    slave = os.open(f"/dev/pts/{number}", os.O_RDWR | os.O_NOCTTY)
    return master, slave


def send_master(sock_fd: int, master: int) -> None:
    with socket.socket(fileno=os.dup(sock_fd)) as sock:
        socket.send_fds(sock, [b"pty"], [master])


def receive_master(sock: socket.socket) -> int:
    _, fds, _, _ = socket.recv_fds(sock, 16, 1)
    if not fds:
        raise EOFError("the container ended before it had a terminal")
    return fds[0]


def become_controlling(slave: int) -> None:
    """In the workload before exec: a session of its own with the slave as stdio and controlling terminal."""
    os.setsid()
    for target in (0, 1, 2):
        os.dup2(slave, target)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    if slave > 2:
        os.close(slave)


def copy_window_size(source: int, master: int) -> None:
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(source, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(master, termios.TIOCSWINSZ, size)


class Relay:
    """Copies the caller's input to the master and the master's output to the caller (or the log)."""

    def __init__(self, master: int, stdin: int | None, stdout: int) -> None:
        self.master, self.stdin, self.stdout = master, stdin, stdout
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="tty-relay", daemon=True)

    def resize_from(self, fd: int) -> None:
        copy_window_size(fd, self.master)

    def start(self) -> None:
        if self.stdin is not None and os.isatty(self.stdin):
            copy_window_size(self.stdin, self.master)
        self._thread.start()

    def _run(self) -> None:
        watched = [self.master, self._stop_r] + ([self.stdin] if self.stdin is not None else [])
        while True:
            ready, _, _ = select.select(watched, [], [])
            if self.master in ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError as exc:  # EIO: every slave fd is closed, the container is gone
                    if exc.errno != errno.EIO:
                        raise
                    data = b""
                if not data:
                    return
                os.write(self.stdout, data)
            if self.stdin is not None and self.stdin in ready:
                data = os.read(self.stdin, 65536)
                if data:
                    os.write(self.master, data)
                else:
                    watched.remove(self.stdin)
            if self._stop_r in ready:
                return

    def stop(self, timeout: float = 2.0) -> None:
        """After the container ended: let the last output through, then stop."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            os.write(self._stop_w, b"x")
            self._thread.join(timeout)
        for fd in (self._stop_r, self._stop_w, self.master):
            with contextlib.suppress(OSError):
                os.close(fd)


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """The caller's terminal in raw mode (keys go to the container's terminal), restored afterwards."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)  # keep what was typed before the container was up
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
