"""`-p HOST:CTR`: the monitor listens on 127.0.0.1:HOST and relays each connection to the container's
address (a userspace proxy like docker-proxy; nothing is left in the host's firewall)."""

from __future__ import annotations

import selectors
import socket
import threading
from typing import Callable


class PortProxy:
    def __init__(self, ports: list[tuple[int, int]], container_ip: str) -> None:
        self.listeners: list[tuple[socket.socket, int]] = []
        for host_port, container_port in ports:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", host_port))
            except OSError as exc:
                sock.close()
                self.close()
                raise OSError(exc.errno, f"cannot publish 127.0.0.1:{host_port}: {exc.strerror}") from None
            sock.listen(128)
            sock.setblocking(False)
            self.listeners.append((sock, container_port))
        self.container_ip = container_ip
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.listeners:
            self._thread = threading.Thread(target=self._serve, name="port-proxy", daemon=True)
            self._thread.start()

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        for sock, port in self.listeners:
            sel.register(sock, selectors.EVENT_READ, ("accept", port))
        pairs: dict[socket.socket, socket.socket] = {}

        def close(sock: socket.socket) -> None:
            other = pairs.pop(sock, None)
            for s in (sock, other):
                if s is not None:
                    pairs.pop(s, None)
                    try:
                        sel.unregister(s)
                    except (KeyError, ValueError):
                        pass
                    s.close()

        while not self._stop.is_set():
            for key, _ in sel.select(timeout=0.2):
                kind = key.data[0]
                if kind == "accept":
                    try:
                        client, _ = key.fileobj.accept()  # type: ignore[union-attr]
                    except OSError:
                        continue
                    try:
                        upstream = socket.create_connection((self.container_ip, key.data[1]), timeout=5)
                    except OSError:
                        client.close()
                        continue
                    client.setblocking(False)
                    upstream.setblocking(False)
                    pairs[client], pairs[upstream] = upstream, client
                    sel.register(client, selectors.EVENT_READ, ("relay",))
                    sel.register(upstream, selectors.EVENT_READ, ("relay",))
                else:
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = src.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        data = b""
                    dst = pairs.get(src)
                    if not data or dst is None:
                        close(src)
                        continue
                    try:
                        dst.setblocking(True)
                        dst.sendall(data)
                        dst.setblocking(False)
                    except OSError:
                        close(src)
        for sock in list(pairs):
            close(sock)
        sel.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        for sock, _ in self.listeners:
            sock.close()
        self.listeners = []
