"""The connection pool and the few ways the rest of the code talks to PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiopg
import psycopg2
import psycopg2.errors
from psycopg2.extras import RealDictCursor

from llm_api.db.sql import Query
from llm_api.errors import ServiceUnavailable

log = logging.getLogger(__name__)
# How long closing waits for connections in use (a request's statement under way) to come back.
_CLOSE_GRACE = 5.0

# A connection that died (server restart, network cut, idle timeout) or a pool that could not
# hand one out in time. Anything else (a constraint violation, a syntax error) is a real error.
CONNECTION_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError, asyncio.TimeoutError)


class DatabaseUnavailable(ServiceUnavailable):
    """PostgreSQL cannot be reached; the request may succeed later."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"The database is unavailable: {first_line(cause)}", param="database", code="database_unavailable")


class Database:
    """An aiopg pool. Reads marked idempotent are retried once on a dropped connection."""

    def __init__(self, pool: aiopg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int, max_size: int, timeout: float) -> Database:
        # aiopg uses one timeout for connecting, waiting for a free connection and each statement.
        pool = await aiopg.create_pool(
            dsn,
            minsize=min_size,
            maxsize=max_size,
            timeout=timeout,
            pool_recycle=300,
            enable_hstore=False,
            cursor_factory=RealDictCursor,
        )
        return cls(pool)

    async def close(self) -> None:
        """Close every connection, waiting up to ``_CLOSE_GRACE`` for those in use to come back.

        aiopg's ``wait_closed`` waits until every connection it counts as in use is released, and an
        acquire cancelled at the wrong moment is never released: shutdown (a worker's SIGTERM, a test's
        teardown) then waited forever, with nothing running. After the grace the rest are closed.
        """
        self._pool.close()
        try:
            await asyncio.wait_for(self._pool.wait_closed(), _CLOSE_GRACE)
        except TimeoutError:
            log.warning("database connections still in use %.0f s after closing began: closing them now", _CLOSE_GRACE)
            self._pool.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._pool.wait_closed(), _CLOSE_GRACE)

    async def fetch_one(self, query: Query, **values: Any) -> dict[str, Any] | None:
        """The first row, or None. Idempotent: retried once if the connection dropped."""
        rows = await self._read(query, values, limit_one=True)
        return rows[0] if rows else None

    async def fetch_all(self, query: Query, **values: Any) -> list[dict[str, Any]]:
        """Every row. Idempotent: retried once if the connection dropped."""
        return await self._read(query, values, limit_one=False)

    async def execute(self, query: Query, **values: Any) -> list[dict[str, Any]]:
        """Run one statement on its own (autocommit); the rows it returns (RETURNING), if any.

        Never retried: a write that may or may not have happened is the caller's to judge.
        """
        try:
            async with self._pool.acquire() as conn, conn.cursor() as cur:
                await cur.execute(query.sql, query.parameters(values))
                return await cur.fetchall() if cur.description is not None else []
        except CONNECTION_ERRORS as error:
            raise DatabaseUnavailable(error) from error

    async def ping(self) -> None:
        """Raise DatabaseUnavailable unless a trivial query round-trips."""
        await self._read(_PING, {}, limit_one=True)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """A transaction on one connection: committed when the block ends, rolled back on error.

        Never retried: the block may have side effects the caller must not repeat blindly.
        """
        try:
            async with self._pool.acquire() as conn, conn.cursor() as cur:
                async with cur.begin():  # aiopg connections are autocommit: BEGIN explicitly
                    yield Transaction(cur)
        except CONNECTION_ERRORS as error:
            raise DatabaseUnavailable(error) from error

    async def _read(self, query: Query, values: dict[str, Any], *, limit_one: bool) -> list[dict[str, Any]]:
        params = query.parameters(values)
        for attempt in (1, 2):
            try:
                async with self._pool.acquire() as conn, conn.cursor() as cur:
                    await cur.execute(query.sql, params)
                    return [await cur.fetchone()] if limit_one else await cur.fetchall()
            except CONNECTION_ERRORS as error:
                # aiopg discards a broken connection when it is released, so the retry gets a fresh one.
                if attempt == 2 or isinstance(error, asyncio.TimeoutError):
                    raise DatabaseUnavailable(error) from error
                log.warning("database connection lost; retrying the read once", extra={"error": first_line(error)})
        raise AssertionError("unreachable")


class Transaction:
    """Statements inside ``Database.transaction()``."""

    def __init__(self, cursor: aiopg.Cursor) -> None:
        self._cursor = cursor

    async def execute(self, query: Query, **values: Any) -> int:
        """Run a statement; the number of rows it touched."""
        await self._cursor.execute(query.sql, query.parameters(values))
        return self._cursor.rowcount

    async def fetch_one(self, query: Query, **values: Any) -> dict[str, Any] | None:
        await self._cursor.execute(query.sql, query.parameters(values))
        return await self._cursor.fetchone()

    async def fetch_all(self, query: Query, **values: Any) -> list[dict[str, Any]]:
        await self._cursor.execute(query.sql, query.parameters(values))
        return await self._cursor.fetchall() if self._cursor.description is not None else []


def first_line(error: BaseException) -> str:
    """The first line of an error's text (driver errors span several), or its class name."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def _ping_query() -> Query:
    import sqlalchemy as sa

    return Query(sa.select(sa.literal_column("1").label("ok")))


_PING = _ping_query()
