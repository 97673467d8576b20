"""The runtime's subcommands of `registry`: pull, run, create, start, ps, stop, kill, pause, unpause, rm,
logs, exec, images, rmi, history, inspect. Imports stay lazy: `run` of a local image never loads aiohttp."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import time

TYPE_CHECKING = False  # typing costs milliseconds of every container start; annotations only
if TYPE_CHECKING:
    from typing import Any
    from collections.abc import Callable

EXIT_ERROR = 125  # as docker: the runtime itself failed


class UsageError(Exception):
    pass


_SIZE = re.compile(r"([0-9]{1,15}(?:\.[0-9]{1,9})?)([kmg]?b?)")  # ASCII digits, bounded: no '٣', no 1e400
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30}


def parse_size(value: str) -> int:
    text = value.strip().lower()
    if text == "-1":
        return -1
    match = _SIZE.fullmatch(text) if text.isascii() else None
    if not match:
        raise argparse.ArgumentTypeError(f"invalid size {value!r} (e.g. 32m, 1g)")
    return int(float(match[1]) * _SIZE_UNITS[match[2]])


def parse_port(value: str) -> tuple[str, int, int]:
    """`HOST:CTR` (published on every host address: "" for 0.0.0.0) or `IP:HOST:CTR`, Docker's forms for TCP;
    (host address, host port, container port)."""
    import ipaddress

    parts = value.removesuffix("/tcp").split(":")
    address = ""
    if len(parts) == 3:
        address = "127.0.0.1" if parts[0] == "localhost" else parts[0]
        try:
            if ipaddress.ip_address(address).version != 4:
                raise ValueError(address)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid port mapping {value!r}: {parts[0]!r} is no IPv4 address") \
                from None
        parts = parts[1:]
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() and len(p) <= 5 and 0 < int(p) < 65536
                                  for p in parts):
        raise argparse.ArgumentTypeError(f"invalid port mapping {value!r}: use [IP:]HOST:CTR")
    return address, int(parts[0]), int(parts[1])


def parse_volume(value: str) -> tuple[str, str, bool]:
    """/HOST:/CTR[:ro|rw], or /CTR alone for an anonymous volume (host part empty until it is made)."""
    if value.startswith("/") and ":" not in value:
        return "", value, False
    parts = value.split(":")
    mode = "rw"
    if len(parts) == 3:
        mode = parts.pop()
    if len(parts) != 2 or mode not in ("ro", "rw") or not parts[0].startswith("/") or not parts[1].startswith("/"):
        raise argparse.ArgumentTypeError(f"invalid volume {value!r}: use /HOST:/CTR[:ro], or /CTR for an anonymous "
                                         "volume")
    if not os.path.exists(parts[0]):
        raise argparse.ArgumentTypeError(f"volume source {parts[0]} does not exist")
    return os.path.realpath(parts[0]), parts[1], mode == "ro"


def parse_device_rate(value: str) -> tuple[str, int]:
    device, _, rate = value.rpartition(":")
    if not device.startswith("/dev/"):
        raise argparse.ArgumentTypeError(f"invalid device rate {value!r}: use /dev/DEVICE:RATE")
    return device, parse_size(rate)


def parse_device_iops(value: str) -> tuple[str, int]:
    """/dev/DEVICE:N, N operations a second (a whole number, as docker takes it)."""
    device, _, rate = value.rpartition(":")
    if not device.startswith("/dev/") or not (rate.isascii() and rate.isdigit() and len(rate) <= 12):
        raise argparse.ArgumentTypeError(f"invalid device rate {value!r}: use /dev/DEVICE:N (operations a second)")
    return device, int(rate)


def parse_restart(value: str) -> str:
    policy, _, limit = value.partition(":")
    if policy not in ("no", "always", "on-failure", "unless-stopped") or \
            (limit and not (limit.isascii() and limit.isdigit() and len(limit) <= 9)):
        raise argparse.ArgumentTypeError(f"invalid restart policy {value!r}: no, on-failure[:N], always")
    return "always" if policy == "unless-stopped" else value


def _container_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name")
    parser.add_argument("--rm", action="store_true", help="remove the container when it exits")
    parser.add_argument("-e", "--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("-w", "--workdir")
    parser.add_argument("-u", "--user", help="user[:group], names or numbers")
    parser.add_argument("--entrypoint")
    parser.add_argument("--hostname")
    parser.add_argument("-i", "--interactive", action="store_true",
                        help="with -t, the caller's input goes to the terminal (without -t stdin is always passed)")
    parser.add_argument("-t", "--tty", action="store_true", help="a pseudo-terminal as the command's stdio")
    parser.add_argument("--init", action="store_true",
                        help="a small init (tini) as PID 1 that reaps zombies and forwards signals, confined "
                             "like the command")
    parser.add_argument("--memory", "-m", type=parse_size)
    parser.add_argument("--memory-swap", type=parse_size)
    parser.add_argument("--cpus", type=float)
    parser.add_argument("--cpu-shares", type=int)
    parser.add_argument("--pids-limit", type=int)
    parser.add_argument("--blkio-weight", type=int)
    parser.add_argument("--device-read-bps", type=parse_device_rate, action="append", default=[])
    parser.add_argument("--device-write-bps", type=parse_device_rate, action="append", default=[])
    parser.add_argument("--device-read-iops", type=parse_device_iops, action="append", default=[])
    parser.add_argument("--device-write-iops", type=parse_device_iops, action="append", default=[])
    parser.add_argument("--network", "--net", choices=["none", "host", "bridge"], default="none")
    parser.add_argument("-p", "--publish", type=parse_port, action="append", default=[])
    parser.add_argument("-v", "--volume", type=parse_volume, action="append", default=[])
    parser.add_argument("--restart", type=parse_restart, default="no")
    parser.add_argument("--pull", choices=["missing", "always", "never"], default="missing")
    parser.add_argument("image")
    parser.add_argument("command", nargs=argparse.REMAINDER)


def _image(name: str, policy: str = "missing", quiet: bool = False) -> Any:
    from registry.runtime.store import ImageStore

    store = ImageStore()
    image = store.lookup(name) if policy != "always" else None
    if image is None:
        if policy == "never":
            raise UsageError(f"image {name} is not in the local store")
        from registry.runtime.pull import pull
        image = pull(name, store, quiet=quiet)
    return store, image


def _create(args: argparse.Namespace) -> Any:
    from registry.runtime import lifecycle
    from registry.runtime.cgroups import Resources

    if args.publish and args.network != "bridge":
        raise UsageError("-p needs --network bridge")
    if args.network == "bridge":
        import importlib.util
        if importlib.util.find_spec("pyroute2") is None:  # an extra (pyproject.toml); found, not imported
            raise UsageError("--network bridge needs the runtime extra: pip install 'registry[runtime]'")
    if args.restart != "no" and args.rm:
        raise UsageError("--restart and --rm cannot be combined")
    if args.memory_swap is not None and args.memory is None:
        raise UsageError("--memory-swap needs --memory")
    if args.memory_swap is not None and args.memory_swap != -1 and args.memory_swap < args.memory:
        raise UsageError("--memory-swap is memory plus swap: it must be at least --memory (or -1 for unlimited swap)")
    if args.init:
        from registry.runtime.process import TINI
        if not os.access(TINI, os.X_OK):
            raise UsageError(f"--init needs {TINI}: apt-get install -y tini")
    store, image = _image(args.image, args.pull)
    resources = Resources(memory=args.memory, memory_swap=args.memory_swap, cpus=args.cpus,
                          cpu_shares=args.cpu_shares, pids_limit=args.pids_limit, blkio_weight=args.blkio_weight,
                          device_read_bps=args.device_read_bps, device_write_bps=args.device_write_bps,
                          device_read_iops=args.device_read_iops, device_write_iops=args.device_write_iops)
    spec = lifecycle.spec_from_image(image, store, command=args.command, entrypoint=args.entrypoint, env=args.env,
                                     workdir=args.workdir, user=args.user, hostname=args.hostname,
                                     network=args.network, ports=args.publish, volumes=args.volume,
                                     resources=resources, restart=args.restart, auto_remove=args.rm,
                                     tty=args.tty, interactive=args.interactive, init=args.init)
    spec.image = args.image  # as typed, as docker ps shows it: the store's record names the digest's latest pull
    from registry.runtime.volumes import create_with_volumes
    return create_with_volumes(spec, image, args.name)


def cmd_run(args: argparse.Namespace) -> int:
    from registry.runtime import lifecycle

    if args.restart != "no" and not args.detach:
        raise UsageError("--restart is for detached containers (-d)")
    state = _create(args)
    if args.detach:
        try:
            lifecycle.start(state)
        except lifecycle.StartError:
            if args.rm:
                lifecycle.remove(state, force=True)
            raise
        print(state.id)
        return 0
    return lifecycle.run_foreground(state)


def cmd_create(args: argparse.Namespace) -> int:
    print(_create(args).id)
    return 0


def _each(names: list[str], action: Callable[[Any], None]) -> int:
    from registry.runtime.state import find

    code = 0
    for name in names:
        try:
            action(find(name))
            print(name)
        except Exception as exc:  # noqa: BLE001 - one failure does not stop the others, as docker does
            print(f"registry: {name}: {exc}", file=sys.stderr)
            code = 1
    return code


def cmd_start(args: argparse.Namespace) -> int:
    from registry.runtime import lifecycle
    return _each(args.containers, lifecycle.start)


def cmd_stop(args: argparse.Namespace) -> int:
    from registry.runtime import lifecycle
    return _each(args.containers, lambda s: lifecycle.stop(s, args.time))


def cmd_kill(args: argparse.Namespace) -> int:
    from registry.runtime import lifecycle
    name = args.signal.upper()
    sig = int(name) if name.isdigit() else signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]
    return _each(args.containers, lambda s: lifecycle.kill(s, sig))


def cmd_pause(args: argparse.Namespace) -> int:
    from registry.runtime import lifecycle
    return _each(args.containers, lifecycle.pause)


def cmd_unpause(args: argparse.Namespace) -> int:
    from registry.runtime import lifecycle
    return _each(args.containers, lifecycle.unpause)


def cmd_rm(args: argparse.Namespace) -> int:
    from registry.runtime import lifecycle, volumes

    def remove(state: Any) -> None:
        lifecycle.remove(state, args.force)
        if args.volumes:
            volumes.remove_for(state.id)
    return _each(args.containers, remove)


def cmd_logs(args: argparse.Namespace) -> int:
    from registry.runtime import lifecycle
    from registry.runtime.state import find
    lifecycle.logs(find(args.container), args.follow)
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    from registry.runtime import lifecycle
    from registry.runtime.state import find
    if not args.command:
        raise UsageError("exec needs a command")
    return lifecycle.exec_in(find(args.container), args.command, env=args.env, workdir=args.workdir,
                             user=args.user, tty=args.tty, interactive=args.interactive)


def cmd_restart(args: argparse.Namespace) -> int:
    from registry.runtime import lifecycle

    def restart(state: Any) -> None:
        state = lifecycle.reconcile(state)
        lifecycle.stop(state, args.time)
        lifecycle.start(state.reload())
    return _each(args.containers, restart)


def _boolean(value: str) -> bool:
    """docker's --flag=false form."""
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {value!r}: true or false")


def cmd_attach(args: argparse.Namespace) -> int:
    from registry.runtime import terminal
    from registry.runtime.attach import attach
    from registry.runtime.lifecycle import LifecycleError
    from registry.runtime.state import NotFound, find

    try:
        state = find(args.container)
        raw = state.spec.tty and state.spec.interactive and not args.no_stdin
        with terminal.raw_mode(0) if raw else contextlib.nullcontext():
            return attach(state, no_stdin=args.no_stdin, sig_proxy=args.sig_proxy)
    except (LifecycleError, NotFound) as exc:
        print(f"registry: {exc}", file=sys.stderr)
        return 1


def cmd_wait(args: argparse.Namespace) -> int:
    from registry.runtime.observe import wait_exit
    from registry.runtime.state import NotFound, find

    code = 0
    for name in args.containers:
        try:
            from registry.runtime.recovery import reconcile
            state = reconcile(find(name))
            waited = wait_exit(state)  # then reconciled: a monitor that died meanwhile is recorded as 137
            after = reconcile(state.reload()) if (state.dir / "state.json").exists() else state
            print(after.exit_code if after.status == "exited" and after.exit_code is not None else waited,
                  flush=True)
        except NotFound as exc:
            print(f"registry: {exc}", file=sys.stderr)
            code = 1
    return code


def _answers(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A verb that only looks: no such container, or not running, is exit 1 with one line, as docker."""
    def run(args: argparse.Namespace) -> int:
        from registry.runtime.observe import ObserveError
        from registry.runtime.state import NotFound
        try:
            return func(args)
        except (ObserveError, NotFound) as exc:
            print(f"registry: {exc}", file=sys.stderr)
            return 1
    return run


@_answers
def cmd_top(args: argparse.Namespace) -> int:
    from registry.runtime.observe import top
    from registry.runtime.state import find
    sys.stdout.write(top(find(args.container), args.ps_args))
    return 0


@_answers
def cmd_stats(args: argparse.Namespace) -> int:
    from registry.runtime.observe import stats
    from registry.runtime.state import all_states, find
    if args.containers:
        states = [find(name) for name in args.containers]
    else:
        states = [s for s in all_states() if s.status in ("running", "paused") and s.monitor_alive()]
    stats(states, stream=not args.no_stream)
    return 0


@_answers
def cmd_port(args: argparse.Namespace) -> int:
    from registry.runtime.observe import port_lines
    from registry.runtime.state import find
    for line in port_lines(find(args.container), args.port):
        print(line)
    return 0


def cmd_cp(args: argparse.Namespace) -> int:
    from registry.runtime.copy import CopyError, copy_in, copy_out, split_target
    from registry.runtime.state import NotFound, find

    (source_name, source_path), (dest_name, dest_path) = split_target(args.source), split_target(args.dest)
    if (source_name is None) == (dest_name is None):
        raise UsageError("cp copies between a container and the host: one of SRC and DEST is CONTAINER:PATH")
    try:
        if source_name is not None:
            copy_out(find(source_name), source_path, dest_path, follow=args.follow_link, archive=args.archive)
        else:
            copy_in(find(dest_name or ""), source_path, dest_path, archive=args.archive, follow=args.follow_link)
    except (CopyError, NotFound) as exc:
        print(f"registry: {exc}", file=sys.stderr)
        return 1
    return 0


def _age(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} seconds"


def cmd_ps(args: argparse.Namespace) -> int:
    from registry.runtime.recovery import reconcile
    from registry.runtime.state import all_states

    rows = [("CONTAINER ID", "IMAGE", "COMMAND", "STATUS", "PORTS", "NAMES")]
    now = time.time()
    for state in all_states():
        state = reconcile(state)  # a dead monitor's container is recorded as exited (137), as inspect shows it
        if not (state.dir / "state.json").exists():
            continue  # a --rm container that reconcile removed
        status = state.status
        if status == "exited" and not args.all:
            continue
        if status == "exited":
            shown = f"Exited ({state.exit_code}) {_age(now - (state.finished or now))} ago"
        elif status == "created":
            shown = "Created"
        elif status == "restarting":
            shown = f"Restarting ({state.exit_code}) {_age(now - (state.finished or now))} ago"
        else:
            shown = f"Up {_age(now - (state.started or now))}" + (" (Paused)" if status == "paused" else "")
        ports = ", ".join(f"{ip or '0.0.0.0'}:{h}->{c}/tcp" for ip, h, c in state.spec.published())
        command = " ".join(state.spec.args)
        rows.append((state.id[:12], state.spec.image, (command[:30] + "…") if len(command) > 31 else command,
                     shown, ports, state.name))
    if args.quiet:
        for row in rows[1:]:
            print(row[0])
        return 0
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from registry.runtime.pull import pull
    image = pull(args.image, quiet=args.quiet)
    print(f"{image.reference}@{image.digest}")
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    from registry.runtime.observe import decimal_size
    from registry.runtime.store import ImageStore

    store = ImageStore()
    rows = [("REPOSITORY", "TAG", "IMAGE ID", "SIZE")]
    for reference, digest in sorted(store.references().items()):
        image = store.image_by_digest(digest)
        if image is None:
            continue
        repo, _, tag = reference.rpartition(":") if ":" in reference.rsplit("/", 1)[-1] else (reference, "", "<none>")
        size = sum(layer.size for layer in image.layers)  # as pulled (compressed)
        rows.append((repo, tag, image.id, decimal_size(size)))  # 1.24MB, 812kB: docker's units
    if args.quiet:
        for row in rows[1:]:
            print(row[2])
        return 0
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    return 0


def cmd_rmi(args: argparse.Namespace) -> int:
    from registry.runtime.state import all_states
    from registry.runtime.store import ImageStore

    store = ImageStore()
    code = 0
    for name in args.images:
        image = store.lookup(name)
        if image is None:
            print(f"registry: no such image: {name}", file=sys.stderr)
            code = 1
            continue
        users = [s.name for s in all_states() if s.spec.image_digest == image.digest]
        if users and not args.force:
            print(f"registry: image {name} is used by containers {', '.join(users)} (rm them or use -f)",
                  file=sys.stderr)
            code = 1
            continue
        refs = [r for r, d in store.references().items() if d == image.digest]
        for ref in (refs if name not in refs else [name]):
            store.remove_reference(ref)
            print(f"Untagged: {ref}")
    keep = {s.spec.image_digest for s in all_states()}
    for digest in store.prune(keep):
        print(f"Deleted: {digest}")
    return code


def cmd_history(args: argparse.Namespace) -> int:
    _, image = _image(args.image, "never")
    history = list(image.config.get("history") or [])
    layers = iter(image.layers)
    rows = [("CREATED", "CREATED BY", "SIZE", "DIGEST")]
    entries = []
    for entry in history or [{} for _ in image.layers]:
        layer = None if entry.get("empty_layer") else next(layers, None)
        entries.append((entry.get("created", ""), (entry.get("created_by") or "")[:60],
                        f"{layer.size}B" if layer else "0B", layer.digest if layer else ""))
    for layer in layers:  # a config without enough history entries
        entries.append(("", "", f"{layer.size}B", layer.digest))
    rows += list(reversed(entries))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from registry.runtime.records import as_json
    from registry.runtime.state import NotFound, find
    from registry.runtime.store import ImageStore

    out = []
    for name in args.names:
        try:
            from registry.runtime.recovery import reconcile
            out.append(as_json(reconcile(find(name))))
            continue
        except NotFound:
            pass
        image = ImageStore().lookup(name)
        if image is None:
            print(f"registry: no such container or image: {name}", file=sys.stderr)
            return 1
        out.append(as_json(image))
    print(json.dumps(out, indent=2))
    return 0


def _wrap(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from registry.runtime.monitor import StartError
        try:
            return func(args)
        except StartError as exc:
            print(f"registry: {exc}", file=sys.stderr)
            return exc.code
        except KeyboardInterrupt:
            return 130
        except Exception as exc:  # noqa: BLE001 - every runtime failure is a message and 125, as docker
            if os.environ.get("REGISTRY_RUNTIME_DEBUG"):
                raise
            print(f"registry: {exc}", file=sys.stderr)
            return EXIT_ERROR
    return run


def _args_pull(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("image")


def _args_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("-d", "--detach", action="store_true")
    _container_options(p)


def _args_containers(p: argparse.ArgumentParser) -> None:
    p.add_argument("containers", nargs="+")


def _args_timed_containers(p: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--time", type=float, default=10.0)
    p.add_argument("containers", nargs="+")


def _args_kill(p: argparse.ArgumentParser) -> None:
    p.add_argument("-s", "--signal", default="KILL")
    p.add_argument("containers", nargs="+")


def _args_rm(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("-v", "--volumes", action="store_true", help="also remove the container's anonymous volumes")
    p.add_argument("containers", nargs="+")


def _args_logs(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("container")


def _args_exec(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user")
    p.add_argument("container")
    p.add_argument("command", nargs=argparse.REMAINDER)


def _args_attach(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-stdin", action="store_true", help="do not send the terminal's input")
    p.add_argument("--sig-proxy", type=_boolean, nargs="?", const=True, default=True, metavar="true|false",
                   help="pass the signals this command gets to the container (default: true)")
    p.add_argument("container")


def _args_top(p: argparse.ArgumentParser) -> None:
    p.add_argument("container")
    p.add_argument("ps_args", nargs=argparse.REMAINDER)


def _args_stats(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-stream", action="store_true", help="print one table and exit")
    p.add_argument("containers", nargs="*")


def _args_port(p: argparse.ArgumentParser) -> None:
    p.add_argument("container")
    p.add_argument("port", nargs="?")


def _args_cp(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--archive", action="store_true",
                   help="keep owners and setuid/setgid bits (default: the copier's owner on the host, root in "
                        "the container)")
    p.add_argument("-L", "--follow-link", action="store_true", help="copy what a symlink SRC points to")
    p.add_argument("source")
    p.add_argument("dest")


def _args_listing(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true")


def _args_ps(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")


def _args_rmi(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("images", nargs="+")


def _args_image(p: argparse.ArgumentParser) -> None:
    p.add_argument("image")


def _args_inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="+")


# name: (what it does, the command, its arguments). A plain table, so that `registry run` builds the parser of
# `run` alone: an argparse parser per verb costs about 0.3 ms, 7 ms for all of them on every container start.
VERBS: dict[str, tuple[str, Callable[[argparse.Namespace], int], Callable[[argparse.ArgumentParser], None]]] = {
    "pull": ("pull an image into the local runtime store", cmd_pull, _args_pull),
    "run": ("run a command in a new container", cmd_run, _args_run),
    "create": ("create a container without starting it", cmd_create, _container_options),
    "start": ("start created or stopped containers (detached)", cmd_start, _args_containers),
    "stop": ("SIGTERM, then SIGKILL after a grace period", cmd_stop, _args_timed_containers),
    "kill": ("send a signal (default SIGKILL)", cmd_kill, _args_kill),
    "pause": ("freeze every process of containers", cmd_pause, _args_containers),
    "unpause": ("thaw paused containers", cmd_unpause, _args_containers),
    "rm": ("remove containers and everything they hold", cmd_rm, _args_rm),
    "logs": ("the output of a detached container", cmd_logs, _args_logs),
    "exec": ("run a command in a running container", cmd_exec, _args_exec),
    "restart": ("stop (SIGTERM, then SIGKILL after -t seconds) and start containers again", cmd_restart,
                _args_timed_containers),
    "attach": ("the terminal on a running container: its output, its stdin (-i), signals passed on", cmd_attach,
               _args_attach),
    "wait": ("block until containers stop, then print their exit codes", cmd_wait, _args_containers),
    "top": ("the processes of a running container (host ps, default -ef)", cmd_top, _args_top),
    "stats": ("CPU, memory, network, block I/O and processes of running containers", cmd_stats, _args_stats),
    "port": ("the published ports of a container, or where one port is published", cmd_port, _args_port),
    "cp": ("copy files between a container and the host: CONTAINER:SRC DEST or SRC CONTAINER:DEST "
           "(- for a tar stream on stdin or stdout)", cmd_cp, _args_cp),
    "ps": ("list containers", cmd_ps, _args_ps),
    "images": ("list images in the local runtime store", cmd_images, _args_listing),
    "rmi": ("remove images (and layers no other image uses)", cmd_rmi, _args_rmi),
    "history": ("an image's layers with sizes and digests", cmd_history, _args_image),
    "inspect": ("details of containers or images, as JSON", cmd_inspect, _args_inspect),
}


def add_commands(subparsers: Any, only: str | None = None) -> None:
    """The runtime's verbs as subcommands; with `only`, that verb alone (what `registry VERB ...` needs)."""
    for name, (help_text, func, arguments) in VERBS.items():
        if only is None or name == only:
            parser = subparsers.add_parser(name, help=help_text, description=help_text)
            parser.set_defaults(func=_wrap(func))
            arguments(parser)
