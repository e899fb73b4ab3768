"""Bringing the database up at start-up: wait for it, migrate it, open the pool."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from llm_api.config import Settings
from llm_api.db.migrate import Migration, migrate
from llm_api.db.pool import CONNECTION_ERRORS, Database, first_line

log = logging.getLogger(__name__)
T = TypeVar("T")


class DatabaseStartupError(RuntimeError):
    """PostgreSQL could not be reached within DB_STARTUP_TIMEOUT."""


async def open_database(settings: Settings) -> Database:
    """Migrate (when AUTO_MIGRATE) and connect, waiting up to DB_STARTUP_TIMEOUT for PostgreSQL."""
    if settings.auto_migrate:
        for migration in await migrate_patiently(settings):
            log.info("applied migration %04d_%s", migration.version, migration.name)
    return await _patiently(
        lambda: Database.connect(
            settings.db_dsn,
            min_size=settings.db_pool_min_size,
            max_size=settings.db_pool_max_size,
            timeout=settings.db_timeout,
        ),
        settings.db_startup_timeout,
    )


async def migrate_patiently(settings: Settings) -> list[Migration]:
    """Apply pending migrations, waiting up to DB_STARTUP_TIMEOUT for PostgreSQL; the ones applied."""
    return await _patiently(lambda: migrate(settings.db_dsn), settings.db_startup_timeout)


async def _patiently(attempt: Callable[[], Awaitable[T]], timeout: float) -> T:
    """Retry on connection errors (the database may still be starting), with a growing pause."""
    deadline = time.monotonic() + timeout
    pause = 0.1
    while True:
        try:
            return await attempt()
        except CONNECTION_ERRORS as error:
            if time.monotonic() + pause > deadline:
                raise DatabaseStartupError(f"PostgreSQL is unreachable after {timeout:g} s: {first_line(error)}") from error
            log.warning("waiting for PostgreSQL: %s", first_line(error))
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)
