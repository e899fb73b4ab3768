"""`llm-api serve` as operators run it: several workers on one port, draining on SIGTERM, JSON logs.

Real processes (``python -m llm_api serve``), a real PostgreSQL, a fake vLLM on loopback in the test's
own event loop, real HTTP.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TEST_SECRET_KEY
from tests.fakes.loopback import running
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.served import healthy, serving

SECRET_WORDS = "the parrot is a sentinel"  # what the user says: must never reach a log at info level


async def guest(session: aiohttp.ClientSession, base: str) -> dict:
    async with session.post(f"{base}/auth/guest-login") as response:
        assert response.status == 201, await response.text()
        tokens = await response.json()
    return {"Authorization": f"Bearer {tokens['access_token']}"}


@pytest.fixture
async def vllm() -> FakeOpenAIUpstream:
    async with running(FakeOpenAIUpstream(models=("jan-v1-4b",))) as fake:
        yield fake


# ---------------------------------------------------------------- workers


async def test_two_workers_serve_one_port_and_a_stream_outlives_sigterm(make_database, vllm):
    async with serving(
        make_database(), "--workers", "2", VLLM_BASE_URL=f"{vllm.base_url}/v1", SHUTDOWN_GRACE_PERIOD="20s"
    ) as service:
        assert len(service.workers()) == 2
        vllm.reply("Bonjour, voici une longue réponse.")
        vllm.stall(after_chunks=2, seconds=2)  # the stream is under way when SIGTERM arrives
        async with aiohttp.ClientSession() as session:
            headers = await guest(session, service.base)
            body = {"model": "vllm/jan-v1-4b", "messages": [{"role": "user", "content": "Salut"}], "stream": True}
            async with session.post(f"{service.base}/v1/chat/completions", json=body, headers=headers) as response:
                assert response.status == 200
                first = await response.content.readline()
                assert first.startswith(b"data: ")
                service.process.send_signal(signal.SIGTERM)
                rest = (await response.content.read()).decode()
        assert rest.rstrip().endswith("data: [DONE]")
        text = "".join(
            choice["delta"].get("content") or ""
            for line in [first.decode(), *rest.splitlines()]
            if line.startswith("data: {")
            for choice in json.loads(line[len("data: ") :])["choices"]
        )
        assert text == "Bonjour, voici une longue réponse."
        assert await asyncio.to_thread(service.process.wait, 30) == 0
    messages = [line["message"] for line in service.log_lines()]
    assert "Handling signal: term" in messages
    assert sum(message.startswith("Worker exiting") for message in messages) == 2


async def test_a_worker_that_dies_is_replaced(make_database):
    async with serving(make_database(), "--workers", "2") as service:
        before = service.workers()
        assert len(before) == 2
        os.kill(before[0], signal.SIGKILL)
        for _ in range(100):
            after = service.workers()
            if len(after) == 2 and before[0] not in after:
                break
            await asyncio.sleep(0.1)
        assert len(after) == 2 and before[0] not in after and before[1] in after
        await healthy(service)
        async with aiohttp.ClientSession() as session:
            for _ in range(10):  # fresh connections: each may land on either worker, the new one included
                async with session.get(f"{service.base}/v1/readyz", headers={"Connection": "close"}) as response:
                    assert response.status == 200


async def test_metrics_add_up_every_workers_samples(make_database):
    async with serving(make_database(), "--workers", "2") as service:
        async with aiohttp.ClientSession() as session:
            for _ in range(20):  # a new connection each: they spread over the workers
                async with session.get(f"{service.base}/v1/version", headers={"Connection": "close"}) as response:
                    assert response.status == 200
            counted = []
            for _ in range(6):  # whichever worker answers the scrape, it reports both workers' requests
                async with session.get(f"{service.base}/metrics", headers={"Connection": "close"}) as response:
                    assert response.status == 200
                    counted.append(requests_counted(await response.text(), "/v1/version"))
    assert counted == [20] * 6


def requests_counted(exposition: str, route: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        if family.name == "llm_api_http_requests"
        for sample in family.samples
        if sample.name == "llm_api_http_requests_total" and sample.labels["route"] == route
    )


async def test_a_busy_port_is_one_line_with_workers(make_database):
    async with serving(make_database()) as first:
        port = first.base.rsplit(":", 1)[1]
        environment = {
            **os.environ,
            "DB_POSTGRESQL_WRITE_DSN": make_database(),
            "LLM_API_SECRET_KEY": TEST_SECRET_KEY,
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": port,
        }
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "llm_api", "serve", "--workers", "2"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"llm-api: cannot listen on 127.0.0.1:{port}: Address already in use"


# ---------------------------------------------------------------- logs


async def test_json_logs_carry_the_request_and_never_what_was_said(make_database, vllm):
    async with serving(make_database(), VLLM_BASE_URL=f"{vllm.base_url}/v1", LOG_LEVEL="info") as service:
        async with aiohttp.ClientSession() as session:
            headers = await guest(session, service.base)
            async with session.post(f"{service.base}/v1/conversations", json={}, headers=headers) as response:
                conversation = (await response.json())["id"]
            vllm.reply("A sentinel parrot, indeed.")
            body = {
                "model": "vllm/jan-v1-4b",
                "conversation": conversation,
                "messages": [{"role": "user", "content": SECRET_WORDS}],
            }
            async with session.post(
                f"{service.base}/v1/chat/completions", json=body, headers={**headers, "X-Request-Id": "req-chat-1"}
            ) as response:
                assert response.status == 200
                principal = response.headers["X-Principal-Id"]
    lines = service.log_lines()
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    [chat] = [line for line in lines if line.get("request_id") == "req-chat-1"]
    assert (chat["route"], chat["status"], chat["principal_id"], chat["conversation_id"], chat["model"]) == (
        "/v1/chat/completions",
        200,
        principal,
        conversation,
        "vllm/jan-v1-4b",
    )
    # Every request's line has its id; nothing said, and no credential, is in any line.
    assert all(line.get("request_id") for line in lines if line["logger"] == "llm_api.access")
    everything = service.output
    assert SECRET_WORDS not in everything and "sentinel parrot" not in everything
    assert headers["Authorization"].split()[1] not in everything
    assert TEST_SECRET_KEY not in everything
