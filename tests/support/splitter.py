"""A TCP forwarder that passes bytes on in small pieces with delays between them: a slow, chopped link.

    python -m tests.support.splitter --listen HOST:PORT --target HOST:PORT \
        [--min-piece 1] [--max-piece 16384] [--min-delay 0] [--max-delay 0.002] [--seed N]

Each direction of each connection is cut into pieces of random size in [min-piece, max-piece]
and each piece is written alone, followed by a random pause in [min-delay, max-delay] seconds,
so the peer's reads return partial bodies the way a real network (or TLS records) makes them.
It works at the TCP level: TLS passes through it end to end. No netem in this kernel, hence this.

Prints `listening HOST:PORT` once it accepts, then, at most every 0.2 s while traffic flows, a
`total conns=N up=BYTES/PIECES down=BYTES/PIECES` line (up: towards the target), so a test can prove
its traffic crossed the link, keep-alive connections included.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import socket
import sys
from dataclasses import dataclass, field


@dataclass
class Link:
    min_piece: int
    max_piece: int
    min_delay: float
    max_delay: float
    rng: random.Random


@dataclass
class Count:
    bytes: int = 0
    pieces: int = 0


@dataclass
class Totals:
    connections: int = 0
    up: Count = field(default_factory=Count)
    down: Count = field(default_factory=Count)

    def line(self) -> str:
        return (f"total conns={self.connections} up={self.up.bytes}/{self.up.pieces} "
                f"down={self.down.bytes}/{self.down.pieces}")


async def _report(totals: Totals, every: float = 0.2) -> None:
    last = ""
    while True:
        await asyncio.sleep(every)
        if totals.line() != last:
            last = totals.line()
            print(last, flush=True)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: Link, count: Count) -> None:
    try:
        while True:
            data = await reader.read(256 * 1024)
            if not data:
                break
            while data:
                size = link.rng.randint(link.min_piece, link.max_piece)
                piece, data = data[:size], data[size:]
                writer.write(piece)
                await writer.drain()
                count.bytes += len(piece)
                count.pieces += 1
                await asyncio.sleep(link.rng.uniform(link.min_delay, link.max_delay))
        if writer.can_write_eof():
            writer.write_eof()  # half-close: the other direction may still be talking
    except (ConnectionError, OSError):
        writer.transport.abort()


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


async def serve(listen: str, target: str, link: Link) -> None:
    target_host, target_port = _split(target)
    totals = Totals()

    open_connections: set[asyncio.Task] = set()

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        open_connections.add(task)
        try:
            await relay(client_reader, client_writer)
        finally:
            open_connections.discard(task)

    async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        totals.connections += 1
        number = totals.connections
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(target_host, target_port)
        except OSError as exc:
            print(f"conn={number} cannot reach {target}: {exc}", file=sys.stderr, flush=True)
            client_writer.transport.abort()
            return
        for writer in (client_writer, upstream_writer):
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await asyncio.gather(_pump(client_reader, upstream_writer, link, totals.up),
                                 _pump(upstream_reader, client_writer, link, totals.down))
        finally:
            for writer in (client_writer, upstream_writer):
                writer.close()

    host, port = _split(listen)
    server = await asyncio.start_server(handle, host, port, reuse_address=True)
    print(f"listening {listen} -> {target}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reporter = asyncio.create_task(_report(totals))
    async with server:
        await stop.wait()
    # Connections still open when told to stop are cut, and their tasks awaited: left pending,
    # asyncio.run would log "Task was destroyed but it is pending" for each.
    for task in list(open_connections):
        task.cancel()
    await asyncio.gather(*open_connections, return_exceptions=True)
    reporter.cancel()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.splitter", description=__doc__.split("\n")[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--min-piece", type=int, default=1)
    parser.add_argument("--max-piece", type=int, default=16384)
    parser.add_argument("--min-delay", type=float, default=0.0)
    parser.add_argument("--max-delay", type=float, default=0.002)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    if not 1 <= args.min_piece <= args.max_piece or not 0 <= args.min_delay <= args.max_delay:
        parser.error("need 1 <= min-piece <= max-piece and 0 <= min-delay <= max-delay")
    link = Link(args.min_piece, args.max_piece, args.min_delay, args.max_delay, random.Random(args.seed))
    asyncio.run(serve(args.listen, args.target, link))


if __name__ == "__main__":
    main()
