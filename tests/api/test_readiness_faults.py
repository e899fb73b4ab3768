"""Readiness under a real network cut between the app and PostgreSQL (a TCP proxy, no patching)."""

from __future__ import annotations

import asyncio
import time

import pytest
from psycopg2.extensions import make_dsn, parse_dsn

from llm_api.app import create_app
from tests.conftest import test_settings
from tests.fakes.tcp_proxy import TcpProxy


@pytest.fixture
async def proxy(database_dsn):
    params = parse_dsn(database_dsn)  # LLM_API_TEST_DSN may be a URL or a key=value string
    host = params.get("host") or "127.0.0.1"
    if host.startswith("/"):  # a Unix socket directory: the proxy speaks TCP to the loopback server
        host = "127.0.0.1"
    tcp_proxy = TcpProxy(host, int(params.get("port") or 5432))
    assert await tcp_proxy.start() == tcp_proxy.port
    yield tcp_proxy
    await tcp_proxy.stop()


@pytest.fixture
async def proxied_client(aiohttp_client, database_dsn, proxy):
    dsn = make_dsn(database_dsn, host="127.0.0.1", port=proxy.port)
    assert parse_dsn(dsn)["port"] == str(proxy.port)
    return await aiohttp_client(create_app(test_settings(dsn)))


async def test_readiness_follows_the_database_through_a_network_cut(proxied_client, proxy):
    client = proxied_client
    ready = await client.get("/v1/readyz")
    assert ready.status == 200
    assert (await ready.json())["checks"]["database"]["status"] == "ok"

    await proxy.cut()
    for _ in range(2):  # the pooled connection dies, and no new one can be made
        started = time.monotonic()
        down = await client.get("/v1/readyz")
        assert down.status == 503
        assert time.monotonic() - started < 5
        error = (await down.json())["error"]
        assert error["param"] == "database"
        assert error["code"] == "not_ready"
        assert error["type"] == "service_unavailable_error"
        assert error["message"].startswith("database: ")
        assert int(down.headers["Retry-After"]) >= 1

    alive = await client.get("/v1/healthz")  # liveness does not depend on the database
    assert alive.status == 200
    assert await alive.json() == {"status": "ok"}

    await proxy.restore()
    deadline = time.monotonic() + 10
    while (status := (await client.get("/v1/readyz")).status) != 200 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert status == 200, "readiness did not recover after the network came back"

    version = await client.get("/v1/version")  # the app survived all of it
    assert version.status == 200
    assert (await version.json())["installation_id"].startswith("inst_")
