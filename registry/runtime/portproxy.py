"""`-p [IP:]HOST:CTR`: the monitor listens on IP:HOST (0.0.0.0, every host address, without an IP) and relays
each connection to the container's address: a userspace proxy like docker-proxy, so nothing is left in the
host's firewall, and the container sees connections come from its gateway (as with docker-proxy)."""

from __future__ import annotations

import selectors
import socket
import threading


class PortProxy:
    """Binds at once (so a taken port fails the start before anything runs); relays once started."""

    def __init__(self, ports: list[tuple[str, int, int]]) -> None:
        """`ports`: (host address, host port, container port), "" for 0.0.0.0 (Spec.published())."""
        self.listeners: list[tuple[socket.socket, int]] = []
        self.container_ip = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        for address, host_port, container_port in ports:
            host = address or "0.0.0.0"
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, host_port))
            except OSError as exc:
                sock.close()
                self.close()
                raise OSError(exc.errno, f"cannot publish {host}:{host_port}: {exc.strerror}") from None
            sock.listen(128)
            sock.setblocking(False)
            self.listeners.append((sock, container_port))

    def start(self, container_ip: str) -> None:
        self.container_ip = container_ip
        if self.listeners:
            self._thread = threading.Thread(target=self._serve, name="port-proxy", daemon=True)
            self._thread.start()

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        for sock, port in self.listeners:
            sel.register(sock, selectors.EVENT_READ, ("accept", port))
        pairs: dict[socket.socket, socket.socket] = {}
        finished: set[socket.socket] = set()  # sockets whose peer has sent EOF (half-closed)

        def close(sock: socket.socket) -> None:
            for s in (sock, pairs.get(sock)):
                if s is not None and s in pairs:
                    pairs.pop(s, None)
                    finished.discard(s)
                    try:
                        sel.unregister(s)
                    except (KeyError, ValueError):
                        pass
                    s.close()

        def eof(src: socket.socket) -> None:
            """Pass the half-close on; the pair goes once both directions are done."""
            dst = pairs[src]
            sel.unregister(src)
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            finished.add(src)
            if dst in finished:
                close(src)

        while not self._stop.is_set():
            for key, _ in sel.select(timeout=0.2):
                if key.data[0] == "accept":
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
                    continue
                src: socket.socket = key.fileobj  # type: ignore[assignment]
                if src not in pairs:
                    continue
                try:
                    data = src.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    close(src)
                    continue
                if not data:
                    eof(src)
                    continue
                dst = pairs[src]
                try:
                    dst.setblocking(True)  # simple backpressure: the slow side stalls the relay
                    dst.settimeout(30)
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
