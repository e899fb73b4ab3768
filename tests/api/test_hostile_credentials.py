"""Credentials that are not text, and credential guessing: 401s and 429s, never a 500."""

from __future__ import annotations

import asyncio
import json

import pytest

from llm_api.app import create_app
from tests.conftest import test_settings

GATEWAY_SECRET = "gateway-secret-0123456789abcdefghijklmnopqrstuvwxyz"


async def raw_request(client, header_lines: list[bytes]) -> tuple[int, dict]:
    """GET /auth/me over a raw socket: aiohttp's client refuses to send undecodable header bytes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    writer.write(
        b"GET /auth/me HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        + b"".join(line + b"\r\n" for line in header_lines)
        + b"\r\n"
    )
    await writer.drain()
    response = await reader.read()
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


@pytest.mark.parametrize(
    "line",
    [
        b"X-API-Key: sk_\xff\xfe",
        b"Authorization: Bearer \xff\xfe",
        b"Authorization: Bearer eyJ\xc3\x28",
        b"X-Gateway-Secret: \xff\xfe",
    ],
)
async def test_undecodable_credential_bytes_are_401(aiohttp_client, database_dsn, line):
    client = await aiohttp_client(create_app(test_settings(database_dsn, GATEWAY_SHARED_SECRET=GATEWAY_SECRET)))
    status, body = await raw_request(client, [line, b"X-User-Subject: someone"])
    assert status == 401, body
    assert set(body["error"]) == {"message", "type", "param", "code"}


async def test_undecodable_gateway_identity_is_401(aiohttp_client, database_dsn):
    client = await aiohttp_client(create_app(test_settings(database_dsn, GATEWAY_SHARED_SECRET=GATEWAY_SECRET)))
    status, body = await raw_request(client, [b"X-Gateway-Secret: " + GATEWAY_SECRET.encode(), b"X-User-Subject: \xff"])
    assert status == 401, body
    assert body["error"]["code"] == "invalid_gateway_identity"


async def test_failed_authentication_counts_against_the_address(aiohttp_client, make_database):
    client = await aiohttp_client(create_app(test_settings(make_database(), RATE_LIMIT_PER_MINUTE=3)))
    statuses = []
    for attempt in range(5):
        response = await client.get("/auth/me", headers={"X-API-Key": f"sk_guess{attempt}"})
        statuses.append(response.status)
    assert statuses == [401, 401, 401, 429, 429]
    assert response.headers["Retry-After"].isdigit()
    assert (await response.json())["error"]["code"] == "rate_limit_exceeded"
