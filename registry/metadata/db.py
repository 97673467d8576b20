"""The database handle: engine set-up, read and write transactions, migrations."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Protocol
from collections.abc import AsyncIterator

from sqlalchemy import Connection as SyncConnection
from sqlalchemy import CursorResult, Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import QueuePool
from sqlalchemy import exc as sa_exc
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable, Insert, Select
from sqlalchemy import Table

from registry.metadata.group_sync import GroupSync
from registry.startup import StartupError, missing_extra, reason

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class DatabaseUnavailable(Exception):
    """The database cannot be reached (down, restarting, network): a 503, never a 500."""


def database_away(exc: BaseException) -> bool:
    """The database not answering for a moment: background loops log it in a line and retry (anything
    else is logged with its traceback)."""
    return isinstance(exc, (DatabaseUnavailable, sa_exc.OperationalError, sa_exc.InterfaceError,
                            sa_exc.DisconnectionError, OSError, TimeoutError))


class Connection(Protocol):
    """What the query modules need: an awaitable execute. Both connection kinds below provide it."""

    # Any: the query modules index and unpack rows by their own select's columns, which the result type
    # of a Protocol cannot carry; CursorResult at runtime (rowcount, scalar, one, iteration).
    async def execute(self, statement: Executable, parameters: Any = None) -> Any: ...


class _InlineSQLite:
    """A sync SQLite connection behind the async interface, executing in the event loop.

    An indexed SQLite lookup takes microseconds, less than the thread hop an async driver
    pays for every call; only COMMIT, which fsyncs, goes to a thread (see Database.write).
    """

    __slots__ = ("_conn",)

    def __init__(self, conn: SyncConnection) -> None:
        self._conn = conn

    async def execute(self, statement: Executable, parameters: Any = None) -> CursorResult[Any]:
        return self._conn.execute(statement, parameters)


class Dedicated(Connection, Protocol):
    """A connection that is not a single transaction (see Database.dedicated)."""

    async def snapshot(self) -> None:
        """Begin a transaction whose reads all see one state of the database (until commit)."""

    async def commit(self) -> None: ...


class _DedicatedPostgres:
    __slots__ = ("_conn",)

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def execute(self, statement: Executable, parameters: Any = None) -> CursorResult[Any]:
        return await self._conn.execute(statement, parameters)

    async def snapshot(self) -> None:
        await self._conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")

    async def commit(self) -> None:
        await self._conn.commit()


class _DedicatedSQLite:
    """Every call in a worker thread, rows fetched there too (a step may sort or scan), one at a time."""

    __slots__ = ("_conn", "_lock")

    def __init__(self, conn: SyncConnection) -> None:
        self._conn = conn
        self._lock = threading.Lock()  # a call whose awaiter was cancelled may still run in its thread

    async def execute(self, statement: Executable, parameters: Any = None) -> Any:
        return await asyncio.to_thread(self._execute, statement, parameters)

    def _execute(self, statement: Executable, parameters: Any) -> Any:
        with self._lock:
            result = self._conn.execute(statement, parameters)
            return result.freeze()() if result.returns_rows else result

    async def snapshot(self) -> None:
        pass  # the deferred BEGIN of the next statement takes its snapshot at the first read, kept until commit

    async def commit(self) -> None:
        await asyncio.to_thread(self._commit)

    def _commit(self) -> None:
        with self._lock:
            self._conn.commit()

    async def close(self) -> None:
        """Stop a statement still running (its awaiter was cancelled), then close the connection."""
        driver: Any = self._conn.connection.driver_connection  # sqlite3's: interrupt() is safe from any thread
        driver.interrupt()
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            self._conn.invalidate()
            self._conn.close()


class Database:
    def __init__(self, url: str, pool_size: int = 10) -> None:
        self.url = url
        self.is_sqlite = make_url(url).get_backend_name() == "sqlite"
        if self.is_sqlite:
            _ensure_parent_dir(url)
            sync_url = make_url(url).set(drivername="sqlite")
            self._sqlite: Engine = create_engine(sync_url, poolclass=QueuePool, pool_size=4, max_overflow=-1,
                                                 connect_args={"check_same_thread": False})
            _configure_sqlite(self._sqlite)
            database = make_url(url).database or ""
            on_disk = bool(database) and database != ":memory:"
            self._group_sync = GroupSync(Path(database).resolve()) if on_disk else None
            self._writer_lock = WriterLock(Path(f"{Path(database).resolve()}.lock")) if on_disk else None
        else:
            try:  # the engine imports its driver now
                self.engine: AsyncEngine = create_async_engine(url, pool_size=pool_size, max_overflow=pool_size,
                                                               pool_pre_ping=True)
            except ModuleNotFoundError as exc:
                raise StartupError(_missing_driver(url, exc)) from None
        # SQLite has one writer at a time; queueing writers here beats spinning on SQLITE_BUSY.
        self._write_lock = asyncio.Lock()
        self._writers = 0  # write() calls of this process under way, queued ones included
        self._statements: dict[tuple[str, str], Insert] = {}
        self._compiled_sql: dict[Select[Any], tuple[str, tuple[str, ...], dict[str, Any]]] = {}

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[Connection]:
        if self.is_sqlite:
            with self._sqlite.connect() as conn:
                yield _InlineSQLite(conn)
            return
        async_conn = await self._connect()
        try:
            yield async_conn
        finally:
            await async_conn.close()

    @contextlib.asynccontextmanager
    async def write(self, durable: bool = True) -> AsyncIterator[Connection]:
        """One transaction, committed when the block ends without an exception.

        `durable=False` is for bookkeeping a crash may lose without harm (upload leases and
        progress, whose truth is the staged bytes): the commit does not wait for the disk. The
        next durable commit flushes it along with its own.
        """
        if not self.is_sqlite:
            async_conn = await self._connect()
            try:
                async with async_conn.begin():
                    if not durable:
                        await async_conn.exec_driver_sql("SET LOCAL synchronous_commit TO off")
                    yield async_conn
            finally:
                await async_conn.close()
            return
        writer_lock = self._writer_lock
        self._writers += 1
        try:
            async with self._write_lock:
                if writer_lock is not None and not writer_lock.held:
                    # Other processes (workers, `registry gc`, `registry user`) write too: wait for
                    # them here, off the loop, so that BEGIN IMMEDIATE below, on the loop, never waits.
                    await writer_lock.acquire()
                try:
                    with self._sqlite.connect() as conn:
                        conn = conn.execution_options(sqlite_immediate=True)
                        transaction = conn.begin()
                        try:
                            yield _InlineSQLite(conn)
                        except BaseException:
                            transaction.rollback()
                            raise
                        transaction.commit()  # WAL frames written, not yet synced (synchronous=NORMAL)
                finally:
                    # Writers of this process queued behind us keep the lock, up to a batch: each
                    # hand-over between processes leaves it idle while the other side's thread and
                    # loop wake up.
                    if writer_lock is not None and (self._writers == 1 or writer_lock.batch_full()):
                        writer_lock.release()
        finally:
            self._writers -= 1
            if writer_lock is not None and self._writers == 0 and writer_lock.held:
                writer_lock.release()  # the writers it was kept for were cancelled while queued
        if durable and self._group_sync is not None:
            await self._group_sync.flush()  # outside the lock: concurrent commits share one fsync

    @contextlib.asynccontextmanager
    async def dedicated(self) -> AsyncIterator[Dedicated]:
        """A connection of its own for long work over the whole database (garbage collection's mark):
        its TEMP tables last as long as the block, it commits when told, and on SQLite each statement
        runs in a worker thread (sqlite3 lets go of the GIL while it steps), so a statement over millions
        of rows never holds the event loop. It is closed, not pooled, afterwards: its session state
        (TEMP tables) goes with it."""
        if not self.is_sqlite:
            async_conn = await self._connect()
            try:
                yield _DedicatedPostgres(async_conn)
            finally:
                await async_conn.invalidate()
                await async_conn.close()
            return
        dedicated = _DedicatedSQLite(await asyncio.to_thread(self._sqlite.connect))
        try:
            await dedicated.execute(text("PRAGMA temp_store = FILE"))  # TEMP tables on disk, not in our memory
            await dedicated.commit()
            yield dedicated
        finally:
            await dedicated.close()

    async def _connect(self) -> AsyncConnection:
        """A pooled connection; a server that cannot be reached is DatabaseUnavailable."""
        conn = self.engine.connect()
        try:
            await conn.start()
        except (TimeoutError, OSError) as exc:
            raise DatabaseUnavailable(f"cannot connect: {exc!r}") from exc
        return conn

    async def column(self, statement: Select[Any], parameters: dict[str, Any]) -> list[Any]:
        """The first column of every row, for long listings (tags, catalog pages).

        On SQLite the compiled SQL runs on the driver's cursor directly: for thousands of rows,
        SQLAlchemy's row objects cost more than the query itself.
        """
        if not self.is_sqlite:
            async with self.read() as conn:
                return list((await conn.execute(statement, parameters)).scalars())
        sql, names, defaults = self._compiled(statement)
        values = [parameters[name] if name in parameters else defaults[name] for name in names]
        with self._sqlite.connect() as conn:
            driver: Any = conn.connection.driver_connection  # sqlite3's own connection: no statement machinery
            return [row[0] for row in driver.execute(sql, values)]

    def _compiled(self, statement: Select[Any]) -> tuple[str, tuple[str, ...], dict[str, Any]]:
        """SQLite's SQL text of a statement, its parameters in order, and their defaults (the
        dialect adds some of its own, such as OFFSET's)."""
        found = self._compiled_sql.get(statement)
        if found is None:
            compiled = statement.compile(dialect=self._sqlite.dialect)
            found = (str(compiled), tuple(compiled.positiontup or ()), dict(compiled.params))
            self._compiled_sql[statement] = found
        return found

    def insert_ignore(self, table: Table) -> Insert:
        """INSERT that silently skips rows whose key already exists (both dialects); built once per table."""
        statement = self._statements.get(("ignore", table.name))
        if statement is None:
            dialect = sqlite if self.is_sqlite else postgresql
            statement = self._statements[("ignore", table.name)] = dialect.insert(table).on_conflict_do_nothing()
        return statement

    def upsert(self, table: Table, key: list[str], update: list[str]) -> Insert:
        """INSERT that overwrites the `update` columns when a row with the same `key` exists (both
        dialects); built once per table, executed with the row as parameters."""
        statement = self._statements.get(("upsert", table.name))
        if statement is None:
            dialect = sqlite if self.is_sqlite else postgresql
            insert = dialect.insert(table)
            statement = self._statements[("upsert", table.name)] = insert.on_conflict_do_update(
                index_elements=key, set_={column: insert.excluded[column] for column in update})
        return statement

    def pool_use(self) -> tuple[int, int]:
        """(connections checked out now, the most the pool may open: -1 for no limit), for metrics."""
        pool: Any = self._sqlite.pool if self.is_sqlite else self.engine.pool  # a QueuePool either way
        overflow = pool._max_overflow  # no public accessor; -1 is "no limit"
        return pool.checkedout(), -1 if overflow < 0 else pool.size() + overflow

    async def close(self) -> None:
        if self.is_sqlite:
            self._sqlite.dispose()
            if self._writer_lock is not None:
                self._writer_lock.close()
        else:
            await self.engine.dispose()


BATCH = 16  # transactions of one process in a row, at most, while another process waits


class WriterLock:
    """The database's one writer across processes: an flock on a file next to the database.

    SQLite's own write lock is taken by BEGIN IMMEDIATE, which, when another process holds it,
    sleeps and retries inside the call for up to busy_timeout: on the event loop, that froze a
    worker for as long as another worker's transaction lasted. Taking this lock first, without
    blocking the loop, leaves BEGIN IMMEDIATE nothing to wait for (writers that do not know the
    lock, such as the sqlite3 shell, still get busy_timeout). One process holds it at a time:
    callers serialise with an asyncio.Lock first, so at most one thread per process waits here.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1
        self._pid = 0
        self._waiter: asyncio.Future[None] | None = None  # a thread blocked in flock(LOCK_EX)
        self._wanted = False  # whether someone awaits that thread; if not, it lets go at once
        self.held = False
        self._transactions = 0  # since acquired

    def _file(self) -> int:
        # Opened in the process that locks: a descriptor inherited across fork would share its lock.
        # flock needs no write access, so an account that may write the database but did not
        # create this (empty) file can still lock it.
        if self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._pid = os.getpid()
        return self._fd

    async def acquire(self) -> None:
        fd = self._file()
        if self._waiter is None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._acquired()
                return
            except BlockingIOError:
                pass
            self._waiter = asyncio.get_running_loop().run_in_executor(None, fcntl.flock, fd, fcntl.LOCK_EX)
            self._waiter.add_done_callback(self._waited)
        # else: an earlier caller was cancelled while its thread waited; we take that thread over.
        waiter = self._waiter
        self._wanted = True
        try:
            await asyncio.shield(waiter)
        except asyncio.CancelledError:
            if self._waiter is waiter:  # still waiting (or its result not yet seen): _waited lets go
                self._wanted = False
            elif waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                fcntl.flock(fd, fcntl.LOCK_UN)  # got it just as we were cancelled
            raise
        self._acquired()

    def _acquired(self) -> None:
        self.held = True
        self._transactions = 0

    def batch_full(self) -> bool:
        """Count a transaction; whether the lock has served enough of them to be handed over."""
        self._transactions += 1
        return self._transactions >= BATCH

    def _waited(self, waiter: asyncio.Future[None]) -> None:
        self._waiter = None
        if not self._wanted and not waiter.cancelled() and waiter.exception() is None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)  # its caller was cancelled and nobody took over

    def release(self) -> None:
        self.held = False
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._pid == os.getpid() and self._waiter is None:
            os.close(self._fd)
            self._pid = 0


def _ensure_parent_dir(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:":
        try:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupError(f"cannot create the database's directory {Path(database).parent}: {reason(exc)}") \
                from None


def _configure_sqlite(engine: Engine) -> None:
    """WAL for concurrent readers; synchronous=NORMAL because durable commits are synced by a
    group fsync of the WAL (GroupSync) before we answer."""

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (pysqlite's is broken)
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000", "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn):
        immediate = conn.get_execution_options().get("sqlite_immediate")
        # Straight to the driver: SQLAlchemy's statement machinery costs ten times the BEGIN itself,
        # and every transaction (reads included) starts with one.
        conn.connection.driver_connection.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")


def migrate(url: str, revision: str = "head") -> None:
    """Apply Alembic migrations (blocking; call before the event loop starts or in a thread).

    An SQLite database already at the newest revision (every start but the first after an upgrade)
    is left alone without importing Alembic, which would stay in the server's memory (about 10 MiB).
    """
    if revision == "head" and _sqlite_revision(url) == head_revision():
        return
    _ensure_parent_dir(url)
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    try:
        command.upgrade(cfg, revision)
    except ModuleNotFoundError as exc:  # the URL's driver (migrations/env.py makes an engine of it)
        raise StartupError(_missing_driver(url, exc)) from None
    except (TimeoutError, OSError, DBAPIError) as exc:  # refused, unknown host, bad password, no database
        shown = make_url(url).render_as_string(hide_password=True)
        raise StartupError(f"cannot reach the database {shown}: {reason(exc)}") from None


def head_revision() -> str:
    """The newest migration's revision: they are numbered files (0001_initial.py, ...), each revising
    the one before (tests/metadata/test_schema_migrations.py checks that against Alembic's own view)."""
    return max(path.name.partition("_")[0] for path in (MIGRATIONS_DIR / "versions").glob("[0-9]*_*.py"))


def _sqlite_revision(url: str) -> str | None:
    """The revision an existing SQLite database is at; None for any other database, or when unknown."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or not parsed.database or parsed.database == ":memory:":
        return None
    if not Path(parsed.database).is_file():
        return None
    try:
        uri = f"{Path(parsed.database).resolve().as_uri()}?mode=ro"  # percent-encoded: any path is safe
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def _missing_driver(url: str, exc: ModuleNotFoundError) -> str:
    """The line for a database URL whose driver is not installed: asyncpg comes with the postgres extra."""
    scheme = make_url(url).drivername
    if exc.name == "asyncpg":
        return missing_extra(f"database.url: {scheme}", "postgres")
    return f"database.url: {scheme} needs the Python module {exc.name}, which is not installed"
