"""PostgreSQL goes away while requests are in flight, then comes back.

A TCP proxy sits between the app and PostgreSQL (the app's DSN names the proxy), so the outage is a
real network cut: every open connection is reset and new ones are refused until it is restored.
Nothing of the app is patched. While the database is unreachable:

* ``/v1/readyz`` answers 503 and ``/v1/healthz`` 200;
* every request answers either normally or 503 with the OpenAI error envelope, code
  ``database_unavailable`` -- never a 500, never a hung request, never a dead process;

once it is back, the same requests succeed again without restarting anything, and no conversation
holds half an exchange (an exchange is stored by one statement: both items or none).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import aiohttp
import pytest

from llm_api.app import create_app
from tests.conftest import TEST_SECRET_KEY, free_port, test_settings
from tests.fakes.loopback import running
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.hardening.support import (
    Answer,
    all_items,
    assert_database_unavailable,
    assert_normal_or_unavailable,
    bearer,
    call,
    chat,
    eventually_ready,
    exchanges,
    guest,
    item_text,
    new_conversation,
    proxy_to,
    stream_finished_cleanly,
    through,
)

PROVIDER_DELAY = 3.0  # s the provider takes to answer the chats in flight: the cut comes meanwhile
TEST_LIMIT = 120.0  # s: a whole scenario; a hang fails the test instead of hanging the run


@pytest.fixture
async def vllm() -> FakeOpenAIUpstream:
    async with running(FakeOpenAIUpstream(models=("jan-v1-4b",))) as fake:
        yield fake


@pytest.fixture
async def database(make_database):
    """A fresh database and a proxy in front of its server: ``(dsn, proxy)``."""
    dsn = make_database()
    proxy = await proxy_to(dsn)
    try:
        yield dsn, proxy
    finally:
        await proxy.stop()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session


def chat_requests(vllm: FakeOpenAIUpstream) -> int:
    return sum(1 for request in vllm.requests if request["path"] == "/v1/chat/completions")


async def until(condition, *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def other_requests(http: aiohttp.ClientSession, base: str, token: str, conversation: str) -> dict[str, Answer]:
    """One of each kind of request that needs the database but no provider; kind -> answer."""
    kinds = {
        "list": call(http, "GET", f"{base}/v1/conversations", headers=bearer(token)),
        "items": call(http, "GET", f"{base}/v1/conversations/{conversation}/items", headers=bearer(token)),
        "settings": call(
            http,
            "PATCH",
            f"{base}/v1/users/me/settings",
            headers=bearer(token),
            json={"profile_settings": {"occupation": "lighthouse keeper"}},
        ),
        "login": call(http, "POST", f"{base}/auth/guest-login"),
    }
    answers = await asyncio.gather(*kinds.values())
    return dict(zip(kinds, answers, strict=True))


NORMAL = {"list": 200, "items": 200, "settings": 200, "login": 201}


async def outage_scenario(http: aiohttp.ClientSession, base: str, proxy, vllm: FakeOpenAIUpstream, alive=lambda: True) -> None:
    """The whole story against the service at ``base``; ``alive()`` says whether its process still runs."""
    me = await guest(http, base)
    token = me["access_token"]
    plain_conv = await new_conversation(http, base, token)
    stream_conv = await new_conversation(http, base, token)
    before = await chat(http, base, token, "before the outage", conversation=plain_conv)
    assert before.status == 200, before
    assert (await call(http, "GET", f"{base}/v1/readyz")).status == 200

    # Two chats whose provider answers only after the cut: their exchange is stored into a dead database.
    asked = chat_requests(vllm)
    vllm.delay(PROVIDER_DELAY)
    vllm.delay(PROVIDER_DELAY)
    plain = asyncio.create_task(chat(http, base, token, "in flight, plain", conversation=plain_conv))
    streamed = asyncio.create_task(chat(http, base, token, "in flight, streamed", conversation=stream_conv, stream=True))
    await until(lambda: chat_requests(vllm) == asked + 2, within=30, what="both chats to reach the provider")

    # Requests of every other kind, started just before the cut and overlapping it.
    overlapping = [asyncio.create_task(other_requests(http, base, token, plain_conv)) for _ in range(3)]
    await proxy.cut()
    overlapping += [asyncio.create_task(other_requests(http, base, token, plain_conv)) for _ in range(3)]

    # While the database is away.
    down = await call(http, "GET", f"{base}/v1/readyz")
    assert down.status == 503, down
    assert down.body["error"]["code"] == "not_ready" and down.body["error"]["param"] == "database", down
    assert (await call(http, "GET", f"{base}/v1/healthz")).status == 200
    for answers in await asyncio.gather(*overlapping):
        for kind, answer in answers.items():
            assert_normal_or_unavailable(answer, NORMAL[kind])
    during = await other_requests(http, base, token, plain_conv)  # well after the cut: none can succeed
    for answer in during.values():
        assert_database_unavailable(answer)
    assert_database_unavailable(await chat(http, base, token, "during the outage", conversation=plain_conv))
    assert_normal_or_unavailable(await chat(http, base, token, "during the outage, no conversation"), 200)

    # The chats in flight: the provider answered, the exchange could not be stored.
    assert_database_unavailable(await plain)
    cut_short = await streamed
    # A stream that already began cannot change its status: the failure arrives as one error event,
    # then [DONE] (as for any failure after a stream began).
    assert cut_short.status == 200, cut_short
    assert cut_short.events[-1] == "[DONE]", cut_short
    errors = [event for event in cut_short.events if isinstance(event, dict) and "error" in event]
    assert len(errors) == 1, cut_short
    assert (
        "".join(
            choice["delta"].get("content") or ""
            for event in cut_short.events
            if isinstance(event, dict)
            for choice in event.get("choices") or []
        )
        == "Bonjour !"
    ), cut_short  # the answer came first
    assert_database_unavailable(Answer(503, {"Retry-After": "1"}, errors[0]))
    assert (await call(http, "GET", f"{base}/v1/healthz")).status == 200
    assert (await call(http, "GET", f"{base}/v1/readyz")).status == 503
    assert alive()

    # The database comes back: no restart, the same requests succeed.
    await proxy.restore()
    ready = await eventually_ready(http, base)
    assert ready.status == 200, f"readiness did not recover after the database came back: {ready}"
    assert ready.body["checks"]["database"]["status"] == "ok", ready
    after = await other_requests(http, base, token, plain_conv)
    for kind, answer in after.items():
        assert answer.status == NORMAL[kind], (kind, answer)
    assert after["settings"].body["profile_settings"]["occupation"] == "lighthouse keeper"
    again = await chat(http, base, token, "after the outage", conversation=plain_conv)
    assert again.status == 200, again
    assert again.body["conversation"]["id"] == plain_conv
    again_streamed = await chat(http, base, token, "after the outage, streamed", conversation=stream_conv, stream=True)
    assert stream_finished_cleanly(again_streamed), again_streamed
    assert (await guest(http, base))["access_token"]
    assert alive()

    # Nothing half-stored: whole exchanges only, and nothing of what failed to store.
    plain_items = await all_items(http, base, token, plain_conv)
    assert [item_text(user) for user, _ in exchanges(plain_items)] == ["before the outage", "after the outage"]
    for _, assistant in exchanges(plain_items):
        assert assistant["status"] == "completed" and item_text(assistant) == "Bonjour !"
    stream_items = await all_items(http, base, token, stream_conv)
    assert [item_text(user) for user, _ in exchanges(stream_items)] == ["after the outage, streamed"]


async def test_an_outage_with_requests_in_flight_is_a_clear_503_and_recovers_without_restart(
    aiohttp_server, database, vllm, http
):
    dsn, proxy = database
    settings = test_settings(through(dsn, proxy), VLLM_BASE_URL=f"{vllm.base_url}/v1", UPSTREAM_RETRIES=0)
    server = await aiohttp_server(create_app(settings))
    base = str(server.make_url("")).rstrip("/")
    await asyncio.wait_for(outage_scenario(http, base, proxy, vllm), TEST_LIMIT)


async def test_repeated_outages_each_recover_by_themselves(aiohttp_server, database, vllm, http):
    """Three cuts in a row: each time a chat is a clear 503, and the service comes back by itself."""
    dsn, proxy = database
    settings = test_settings(through(dsn, proxy), VLLM_BASE_URL=f"{vllm.base_url}/v1", UPSTREAM_RETRIES=0)
    server = await aiohttp_server(create_app(settings))
    base = str(server.make_url("")).rstrip("/")

    async def flapping() -> None:
        me = await guest(http, base)
        conversation = await new_conversation(http, base, me["access_token"])
        for round_ in range(3):
            await proxy.cut()
            answer = await chat(http, base, me["access_token"], f"cut {round_}", conversation=conversation)
            assert_database_unavailable(answer)
            await proxy.restore()
            assert (await eventually_ready(http, base)).status == 200
            answer = await chat(http, base, me["access_token"], f"round {round_}", conversation=conversation)
            assert answer.status == 200, answer
        stored = await all_items(http, base, me["access_token"], conversation)
        assert [item_text(user) for user, _ in exchanges(stored)] == [f"round {n}" for n in range(3)]

    await asyncio.wait_for(flapping(), TEST_LIMIT)


# -- a real `llm-api serve` process ----------------------------------------------------------------------------------


@pytest.fixture
async def served(database, vllm, tmp_path):
    """``llm-api serve`` in its own process, its database behind the proxy; ``(base, process)``."""
    dsn, proxy = database
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DB_POSTGRESQL", "PG"))}
    environment.update(
        DB_POSTGRESQL_WRITE_DSN=through(dsn, proxy),
        LLM_API_SECRET_KEY=TEST_SECRET_KEY,
        HTTP_PORT=str(port),
        HTTP_HOST="127.0.0.1",
        VLLM_BASE_URL=f"{vllm.base_url}/v1",
        UPSTREAM_RETRIES="0",
        RATE_LIMIT_PER_MINUTE="0",
    )
    log = (tmp_path / "serve.log").open("w")  # a file, not a pipe: a full pipe would block the process
    process = subprocess.Popen([sys.executable, "-m", "llm_api", "serve"], env=environment, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as session:
            while True:
                assert process.poll() is None, (tmp_path / "serve.log").read_text()
                assert time.monotonic() < deadline, "llm-api serve did not become ready"
                try:
                    if (await call(session, "GET", f"{base}/v1/readyz", limit=5)).status == 200:
                        break
                except (TimeoutError, aiohttp.ClientConnectionError):
                    pass
                await asyncio.sleep(0.1)
        yield base, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 10)
        log.close()


async def test_a_served_process_survives_the_outage_and_serves_again(served, database, vllm, http):
    base, process = served
    _, proxy = database
    await asyncio.wait_for(outage_scenario(http, base, proxy, vllm, alive=lambda: process.poll() is None), TEST_LIMIT)
    assert process.poll() is None, "llm-api serve exited"
    assert process.returncode is None
    version = await call(http, "GET", f"{base}/v1/version")
    assert version.status == 200, version
