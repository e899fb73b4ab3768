"""Fixtures for chat tests: fake providers on loopback ports, and the app served on a real port in
front of them, each test on a fresh database (providers are global to a database)."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import openai
import pytest
from aiohttp.test_utils import TestServer

from llm_api.app import create_app
from tests.api.callers import Caller
from tests.conftest import test_settings
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.loopback import running
from tests.fakes.memory_service import FakeMemory
from tests.fakes.openai_upstream import FakeOpenAIUpstream

ANTHROPIC_KEY = "sk-ant-test"


@pytest.fixture
async def vllm() -> FakeOpenAIUpstream:
    async with running(FakeOpenAIUpstream(models=("jan-v1-4b",))) as fake:
        yield fake


@pytest.fixture
async def claude() -> FakeAnthropic:
    async with running(FakeAnthropic(api_key=ANTHROPIC_KEY)) as fake:
        yield fake


@pytest.fixture
async def memory() -> FakeMemory:
    """Jan's memory-tools, remembering a little about the user, a project and the past."""
    async with running(FakeMemory()) as fake:
        fake.remember(
            core=["prefers SI units"],
            semantic=[("Lab", "the lab is in Villeurbanne")],
            episodic=["asked about buffers yesterday"],
        )
        yield fake


@pytest.fixture
def serve(aiohttp_server, make_database) -> Callable:
    """``await serve(**ENV)``: the app on a real port, on a fresh database, with these settings."""

    async def start(**env) -> TestServer:
        return await aiohttp_server(create_app(test_settings(make_database(), **env)))

    return start


@pytest.fixture
async def vllm_server(serve, vllm) -> TestServer:
    """The app with one provider: the fake vLLM, declared by VLLM_BASE_URL."""
    return await serve(VLLM_BASE_URL=f"{vllm.base_url}/v1", UPSTREAM_RETRIES=0)


@pytest.fixture
async def claude_server(serve, claude) -> TestServer:
    """The app with one provider: the fake Anthropic, declared by ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL."""
    return await serve(ANTHROPIC_API_KEY=ANTHROPIC_KEY, ANTHROPIC_BASE_URL=f"{claude.base_url}/v1", UPSTREAM_RETRIES=0)


async def guest_token(server: TestServer) -> str:
    async with aiohttp.ClientSession() as session, session.post(str(server.make_url("/auth/guest-login"))) as response:
        assert response.status == 201, await response.text()
        return (await response.json())["access_token"]


def sdk(server: TestServer, token: str) -> openai.AsyncOpenAI:
    """The official SDK as a demanding user configures it: strict response validation, no retries."""
    return openai.AsyncOpenAI(
        base_url=str(server.make_url("/v1")), api_key=token, max_retries=0, _strict_response_validation=True
    )


@pytest.fixture
async def oai(vllm_server) -> openai.AsyncOpenAI:
    async with sdk(vllm_server, await guest_token(vllm_server)) as client:
        yield client


@pytest.fixture
async def oai_claude(claude_server) -> openai.AsyncOpenAI:
    async with sdk(claude_server, await guest_token(claude_server)) as client:
        yield client


async def guest_caller(http: aiohttp.ClientSession) -> Caller:
    """A new guest, talking to the app through ``http``."""
    response = await http.post("/auth/guest-login")
    assert response.status == 201, await response.text()
    return Caller(http, await response.json())


@pytest.fixture
async def http(server) -> aiohttp.ClientSession:
    """A session on the test module's ``server`` fixture."""
    async with aiohttp.ClientSession(base_url=str(server.make_url("/"))) as session:
        yield session


@pytest.fixture
async def me(http) -> Caller:
    return await guest_caller(http)
