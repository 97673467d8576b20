"""`registry user ...` and `registry robot ...`: accounts in the metadata database.

Passwords are read from a prompt or stdin, stored as bcrypt hashes, and never printed or logged.
A robot's secret is shown once, at creation; only its sha256 is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import re
import sys
import time
from typing import Any
from collections.abc import Awaitable, Callable

from registry.auth.credentials import (MAX_PASSWORD_BYTES, ROBOT_PREFIX, hash_password, hash_robot_secret,
                                       new_robot_secret)
from registry.auth.policy import ACTIONS
from registry.config import add_arguments
from registry.settings import load
from registry.metadata import accounts
from registry.metadata.db import Database, migrate

_ACCOUNT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
_DURATION = re.compile(r"([0-9]{1,9})([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class AccountError(Exception):
    pass


def _run(args: argparse.Namespace, work: Callable[[Database], Awaitable[int]]) -> int:
    config = load(args)
    if config.database.migrate_on_start:
        migrate(config.database_url)

    async def main() -> int:
        db = Database(config.database_url, pool_size=2)
        try:
            return await work(db)
        finally:
            await db.close()

    try:
        return asyncio.run(main())
    except AccountError as exc:
        print(f"registry: {exc}", file=sys.stderr)
        return 1


def _name(value: str) -> str:
    if not _ACCOUNT_NAME.fullmatch(value):
        raise argparse.ArgumentTypeError("names are letters, digits and . _ @ - (up to 128)")
    return value


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password (again): ") != password:
            raise AccountError("the passwords do not match")
    if len(password) < 8:
        raise AccountError("a password has at least 8 characters")
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise AccountError(f"a password has at most {MAX_PASSWORD_BYTES} bytes (bcrypt's limit)")
    return password


def user_add(args: argparse.Namespace) -> int:
    groups = [g.strip() for g in args.group for g in g.split(",") if g.strip()]

    async def work(db: Database) -> int:
        hashed = await asyncio.to_thread(hash_password, _read_password(args))
        async with db.write() as conn:
            created = await accounts.put_user(conn, args.name, hashed, groups)
        shown_groups = f" (groups: {', '.join(groups)})" if groups else ""
        print(f"user {args.name} {'added' if created else 'updated'}{shown_groups}")
        return 0

    return _run(args, work)


def user_passwd(args: argparse.Namespace) -> int:
    async def work(db: Database) -> int:
        hashed = await asyncio.to_thread(hash_password, _read_password(args))
        async with db.write() as conn:
            if not await accounts.set_password(conn, args.name, hashed):
                raise AccountError(f"no user {args.name}")
        print(f"password of {args.name} changed")
        return 0

    return _run(args, work)


def _remover(kind: str, delete: Callable[[Any, str], Awaitable[bool]]) -> Callable[[argparse.Namespace], int]:
    def remove(args: argparse.Namespace) -> int:
        async def work(db: Database) -> int:
            async with db.write() as conn:
                if not await delete(conn, args.name):
                    raise AccountError(f"no {kind} {args.name}")
            print(f"{kind} {args.name} removed")
            return 0

        return _run(args, work)

    return remove


user_remove = _remover("user", accounts.delete_user)
robot_remove = _remover("robot", accounts.delete_robot)


def user_list(args: argparse.Namespace) -> int:
    async def work(db: Database) -> int:
        async with db.read() as conn:
            for user in await accounts.list_users(conn):
                print(f"{user.name}\t{','.join(user.groups)}")
        return 0

    return _run(args, work)


def _expiry(value: str) -> float | None:
    if value in ("never", ""):
        return None
    match = _DURATION.fullmatch(value)
    if not match:
        raise argparse.ArgumentTypeError("a duration like 30d, 12h, 90m, or never")
    return time.time() + int(match[1]) * _UNITS[match[2]]


def robot_add(args: argparse.Namespace) -> int:
    actions = sorted({a.strip() for a in args.actions.split(",") if a.strip()})
    if not actions or not set(actions) <= set(ACTIONS):
        print(f"registry: --actions must be among {', '.join(ACTIONS)}", file=sys.stderr)
        return 2
    secret = new_robot_secret()

    async def work(db: Database) -> int:
        async with db.write() as conn:
            await accounts.put_robot(conn, args.name, hash_robot_secret(secret), args.repository, actions, args.expires)
        until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(args.expires)) if args.expires else "never"
        print(f"robot {args.name}: {','.join(actions)} on {', '.join(args.repository)}; expires {until}",
              file=sys.stderr)
        print(f"username: {ROBOT_PREFIX}{args.name}", file=sys.stderr)
        print("password (shown once, keep it in your CI's secret store):", file=sys.stderr)
        print(secret)
        return 0

    return _run(args, work)


def robot_list(args: argparse.Namespace) -> int:
    async def work(db: Database) -> int:
        async with db.read() as conn:
            for robot in await accounts.list_robots(conn):
                until = time.strftime("%Y-%m-%d %H:%M", time.gmtime(robot.expires_at)) if robot.expires_at else "never"
                expired = " (expired)" if robot.expires_at and robot.expires_at < time.time() else ""
                print(f"{ROBOT_PREFIX}{robot.name}\t{','.join(robot.actions)}\t{','.join(robot.repositories)}\t"
                      f"{until}{expired}")
        return 0

    return _run(args, work)


ACCOUNT_OPTIONS = ("data_dir", "database.url")  # accounts live in the database only


def add_commands(commands: Any) -> None:
    user = commands.add_parser("user", help="manage users (bcrypt hashes in the database)")
    user_commands = user.add_subparsers(dest="user_command", required=True)
    for verb, handler, doc in (("add", user_add, "add or update a user"), ("passwd", user_passwd, "change a password"),
                               ("remove", user_remove, "remove a user"), ("list", user_list, "list users")):
        parser = user_commands.add_parser(verb, help=doc, description=doc)
        add_arguments(parser, ACCOUNT_OPTIONS)
        if verb != "list":
            parser.add_argument("name", type=_name)
        if verb in ("add", "passwd"):
            parser.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
        if verb == "add":
            parser.add_argument("--group", action="append", default=[], help="group (repeat or comma-separate)")
        parser.set_defaults(func=handler)

    robot = commands.add_parser("robot", help="manage robot (CI) accounts: scoped, expiring secrets")
    robot_commands = robot.add_subparsers(dest="robot_command", required=True)
    add = robot_commands.add_parser("add", help="create (or replace) a robot; prints its secret once")
    add_arguments(add, ACCOUNT_OPTIONS)
    add.add_argument("name", type=_name)
    add.add_argument("--repository", action="append", required=True, help="repository pattern (repeatable), e.g. ci/*")
    add.add_argument("--actions", default="pull,push", help="comma-separated: pull,push,delete (default pull,push)")
    add.add_argument("--expires", type=_expiry, default=_expiry("90d"), help="30d, 12h, never (default 90d)")
    add.set_defaults(func=robot_add)
    for verb, handler in (("remove", robot_remove), ("list", robot_list)):
        parser = robot_commands.add_parser(verb, help=f"{verb} robots")
        add_arguments(parser, ACCOUNT_OPTIONS)
        if verb == "remove":
            parser.add_argument("name", type=_name)
        parser.set_defaults(func=handler)
