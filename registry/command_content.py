"""The registry's content as the server builds it (quotas, immutable tags, events recorded), for a command
that writes to it from its own process: `registry import`, `registry replicate`."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator

from registry.config import Config
from registry.content.local import LocalContent
from registry.events.journal import Journal, Source
from registry.gc.immutable import ImmutableTags
from registry.gc.policy import parse_quotas
from registry.metadata.db import Database, migrate
from registry.storage import create_store


@contextlib.asynccontextmanager
async def local_content(config: Config, command: str) -> AsyncIterator[LocalContent]:
    """`command` names the process in the events it records (`host:import`)."""
    if config.database.migrate_on_start:
        await asyncio.to_thread(migrate, config.database_url)
    db = Database(config.database_url)
    store = create_store(config)
    journal = Journal(db, Source(f"{socket.gethostname()}:{command}", str(uuid.uuid4())))
    content = LocalContent(db, store, quotas=parse_quotas(config.quota.namespaces),
                           grace_seconds=config.gc.grace_period, immutable=ImmutableTags.from_config(config),
                           journal=journal)
    journal.start()
    try:
        yield content
    finally:
        await journal.stop()
        await store.close()
        await db.close()
