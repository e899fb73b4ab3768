"""Shared fixtures: a real PostgreSQL, a throwaway database per test session, the app, a live server.

PostgreSQL comes from LLM_API_TEST_DSN (an admin DSN; a database is created and dropped in it),
by default the local server at 127.0.0.1:5432. When that is unreachable, an embedded PostgreSQL is
started for the session, so the suite also runs on a machine without PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from aiohttp import web
from psycopg2.extensions import make_dsn

from llm_api.app import create_app
from llm_api.config import Settings
from llm_api.embedded_pg import EmbeddedPostgres, find_pg_bindir
from tests.fakes.keycloak import FakeKeycloak
from tests.sql import query

DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
TEST_SECRET_KEY = "test-secret-key-0123456789abcdefghijklmnop"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _reachable(dsn: str) -> bool:
    try:
        psycopg2.connect(dsn, connect_timeout=3).close()
        return True
    except psycopg2.OperationalError:
        return False


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    """A DSN with the right to create databases."""
    dsn = os.environ.get("LLM_API_TEST_DSN", DEFAULT_ADMIN_DSN)
    if _reachable(dsn):
        yield dsn
        return
    base = Path(tempfile.mkdtemp(prefix="llm-api-test-pg-", dir="/tmp"))
    base.chmod(0o755)  # the embedded server may run as an unprivileged user who must reach it
    try:
        with EmbeddedPostgres(base, bindir=find_pg_bindir(os.environ), durable=False) as embedded_dsn:
            yield embedded_dsn
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def make_database(pg_admin_dsn: str):
    """A factory of fresh, empty databases; all are dropped at the end of the session."""
    created: list[str] = []

    def make() -> str:
        name = f"llm_api_test_{secrets.token_hex(6)}"
        query(pg_admin_dsn, f'CREATE DATABASE "{name}"')
        created.append(name)
        return make_dsn(pg_admin_dsn, dbname=name)

    yield make
    for name in created:
        query(pg_admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_dsn(make_database) -> str:
    """The session's database; the app migrates it on its first start."""
    return make_database()


def test_settings(dsn: str, **overrides: object) -> Settings:
    """Settings as the tests run the service: strict contract checks on."""
    values = {
        "DB_POSTGRESQL_WRITE_DSN": dsn,
        "OPENAPI_STRICT_VALIDATION": True,
        "DB_POOL_MIN_SIZE": 1,
        "DB_POOL_MAX_SIZE": 5,
        "DB_STARTUP_TIMEOUT": 5,
        "LLM_API_SECRET_KEY": TEST_SECRET_KEY,
        # Most tests make many requests as one caller; the rate-limit tests turn the limit on.
        "RATE_LIMIT_PER_MINUTE": 0,
    }
    values.update(overrides)
    return Settings.from_env(values)


test_settings.__test__ = False  # a helper, not a test


@pytest.fixture
def settings(database_dsn: str) -> Settings:
    return test_settings(database_dsn)


@pytest.fixture
async def client(aiohttp_client, settings: Settings):
    """An HTTP client talking to the app over loopback."""
    return await aiohttp_client(create_app(settings))


class LiveServer:
    """The app served on a real port by a thread with its own event loop.

    For synchronous clients (the OpenAI SDK, schemathesis, generated clients), which must not
    block the loop the app runs on.
    """

    def __init__(self, app: web.Application) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._app = app
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)

    async def _start(self) -> None:
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
async def kc() -> FakeKeycloak:
    """A wire-level fake Keycloak on a loopback port (see tests/fakes/keycloak.py)."""
    fake = FakeKeycloak()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture(scope="session")
def live_server(make_database) -> Iterator[LiveServer]:
    """One live server for the session, in strict contract mode, on its own database."""
    server = LiveServer(create_app(test_settings(make_database())))
    server.start()
    try:
        yield server
    finally:
        server.stop()
