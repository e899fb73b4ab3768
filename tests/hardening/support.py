"""Helpers shared by the hardening tests: a TCP proxy in front of PostgreSQL, guests, chats, items."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
from psycopg2.extensions import make_dsn, parse_dsn

from tests.fakes.tcp_proxy import TcpProxy
from tests.sse import data_events

MODEL = "vllm/jan-v1-4b"
REQUEST_LIMIT = 60.0  # s: no single request may take longer (a hung request fails the test, it never hangs it)


async def proxy_to(dsn: str) -> TcpProxy:
    """A started TCP proxy forwarding to the PostgreSQL of ``dsn``."""
    params = parse_dsn(dsn)  # LLM_API_TEST_DSN may be a URL or a key=value string
    host = params.get("host") or "127.0.0.1"
    if host.startswith("/"):  # a Unix socket directory: the proxy speaks TCP to the loopback server
        host = "127.0.0.1"
    proxy = TcpProxy(host, int(params.get("port") or 5432))
    await proxy.start()
    return proxy


def through(dsn: str, proxy: TcpProxy) -> str:
    """``dsn`` with the proxy as its server."""
    proxied = make_dsn(dsn, host="127.0.0.1", port=proxy.port)
    assert parse_dsn(proxied)["port"] == str(proxy.port)
    return proxied


class Answer:
    """A finished HTTP exchange: status, headers, parsed body (JSON, SSE events, or text)."""

    def __init__(self, status: int, headers: Any, body: Any, events: list | None = None) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.events = events  # for a stream: parsed `data:` payloads, "[DONE]" as a string

    def __repr__(self) -> str:
        return f"Answer({self.status}, {self.body!r}, events={self.events!r})"


async def call(session: aiohttp.ClientSession, method: str, url: str, *, limit: float = REQUEST_LIMIT, **kwargs: Any) -> Answer:
    """One request, read to its end, within ``limit`` seconds (asyncio.TimeoutError otherwise)."""

    async def run() -> Answer:
        async with session.request(method, url, **kwargs) as response:
            if response.content_type == "text/event-stream":
                return Answer(response.status, response.headers, None, await data_events(response))
            raw = await response.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            return Answer(response.status, response.headers, body)

    return await asyncio.wait_for(run(), limit)


def assert_database_unavailable(answer: Answer) -> None:
    """A 503 in the OpenAI error envelope, saying the database is unavailable."""
    assert answer.status == 503, answer
    assert isinstance(answer.body, dict) and set(answer.body) == {"error"}, answer
    error = answer.body["error"]
    assert set(error) == {"message", "type", "param", "code"}, answer
    assert error["code"] == "database_unavailable", answer
    assert error["type"] == "service_unavailable_error", answer
    assert error["param"] == "database", answer
    assert isinstance(error["message"], str) and error["message"].startswith("The database is unavailable"), answer
    assert int(answer.headers["Retry-After"]) >= 1, answer


def assert_normal_or_unavailable(answer: Answer, normal: int) -> None:
    """Either the normal answer or the clear 503; never a 500, never anything else."""
    if answer.status != normal:
        assert_database_unavailable(answer)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def guest(session: aiohttp.ClientSession, base: str) -> dict:
    """A new guest's token set (``access_token``, ``user_id`` ...)."""
    answer = await call(session, "POST", f"{base}/auth/guest-login")
    assert answer.status == 201, answer
    return answer.body


async def new_conversation(session: aiohttp.ClientSession, base: str, token: str, **body: Any) -> str:
    answer = await call(session, "POST", f"{base}/v1/conversations", json=body, headers=bearer(token))
    assert answer.status == 200, answer
    return answer.body["id"]


def chat_body(text: str, *, conversation: str | None = None, stream: bool = False) -> dict:
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": text}]}
    if conversation is not None:
        body["conversation"] = conversation
    if stream:
        body["stream"] = True
    return body


async def chat(
    session: aiohttp.ClientSession, base: str, token: str, text: str, *, conversation: str | None = None, stream: bool = False
) -> Answer:
    return await call(
        session,
        "POST",
        f"{base}/v1/chat/completions",
        headers=bearer(token),
        json=chat_body(text, conversation=conversation, stream=stream),
    )


async def all_items(session: aiohttp.ClientSession, base: str, token: str, conversation: str) -> list[dict]:
    """Every item of the conversation, oldest first (following the pages)."""
    found: list[dict] = []
    after = None
    while True:
        params = {"order": "asc", "limit": "100", **({"after": after} if after else {})}
        answer = await call(session, "GET", f"{base}/v1/conversations/{conversation}/items", params=params, headers=bearer(token))
        assert answer.status == 200, answer
        found += answer.body["data"]
        if not answer.body["has_more"]:
            return found
        after = answer.body["last_id"]


def item_text(item: dict) -> str:
    """The text of a message item (its text parts joined)."""
    return "".join(part.get("text", "") for part in item.get("content") or [] if isinstance(part, dict))


def exchanges(items: list[dict]) -> list[tuple[dict, dict]]:
    """The items as (user, assistant) pairs, asserting they are exactly that: whole exchanges, in order."""
    shown = [(item["type"], item.get("role"), item_text(item)) for item in items]  # what a failure prints
    assert len(items) % 2 == 0, f"an odd number of items: half an exchange stored: {shown}"
    pairs = []
    for user, assistant in zip(items[::2], items[1::2], strict=True):
        assert (user["type"], user["role"]) == ("message", "user"), f"not whole exchanges in order: {shown}"
        assert (assistant["type"], assistant["role"]) == ("message", "assistant"), f"not whole exchanges in order: {shown}"
        pairs.append((user, assistant))
    return pairs


async def eventually_ready(session: aiohttp.ClientSession, base: str, *, within: float = 30.0) -> Answer:
    """Poll /v1/readyz until it answers 200 (or ``within`` seconds pass); the last answer."""
    deadline = time.monotonic() + within
    while True:
        answer = await call(session, "GET", f"{base}/v1/readyz", limit=10)
        if answer.status == 200 or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.2)


def stream_finished_cleanly(answer: Answer) -> bool:
    events = answer.events or []
    return (
        answer.status == 200
        and bool(events)
        and events[-1] == "[DONE]"
        and not any(isinstance(event, dict) and "error" in event for event in events)
    )
