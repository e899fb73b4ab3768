"""Helpers shared by the fault tests (test_faults.py, test_faults_stream.py): raw chat calls, the error
envelope, SSE bodies taken apart, and providers files."""

from __future__ import annotations

import json
import socket
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from multidict import CIMultiDictProxy

from llm_api.schemas.models import ErrorResponse
from tests.chat.conftest import guest_token
from tests.fakes.loopback import running
from tests.fakes.openai_upstream import FakeOpenAIUpstream

VLLM_MODEL = "jan-v1-4b"
CLAUDE_MODEL = "claude-sonnet-4-5"
MESSAGES = [{"role": "user", "content": "Salut"}]
# A gateway that hangs fails the test after this long instead of blocking the run.
CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=5)


@dataclass
class Answer:
    status: int
    headers: CIMultiDictProxy
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def chat(server: TestServer, token: str, model: str, *, stream: bool = False, **fields: Any) -> Answer:
    """POST /v1/chat/completions with a one-message prompt; the raw status, headers and body."""
    body = {"model": model, "messages": MESSAGES, **({"stream": True} if stream else {}), **fields}
    async with (
        aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session,
        session.post(
            str(server.make_url("/v1/chat/completions")),
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        return Answer(response.status, response.headers, await response.read())


def check_envelope(payload: Any) -> dict[str, Any]:
    """The ``error`` object of an OpenAI error envelope, after checking the envelope has exactly its four fields."""
    assert isinstance(payload, dict) and set(payload) == {"error"}, payload
    error = payload["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    ErrorResponse.model_validate(payload)
    return error


def assert_error(answer: Answer, status: int, *, type: str, code: str, message: str) -> dict[str, Any]:
    """A JSON error answer: its status, the envelope, and a message starting with ``message``."""
    assert answer.status == status, (answer.status, answer.body)
    assert answer.headers["Content-Type"].startswith("application/json"), answer.headers
    error = check_envelope(answer.json())
    assert (error["type"], error["code"], error["param"]) == (type, code, None), error
    assert error["message"].startswith(message), error["message"]
    return error


@dataclass
class Stream:
    """A streamed answer taken apart: its chunks, the error frame (if any), and its ``: ping`` comments."""

    chunks: list[dict[str, Any]]
    error: dict[str, Any] | None
    pings: int

    @property
    def text(self) -> str:
        return "".join(choice["delta"].get("content") or "" for chunk in self.chunks for choice in chunk["choices"])


def stream_of(answer: Answer) -> Stream:
    """Check the framing of an SSE answer (``data:`` events and comments, ``[DONE]`` last, an error frame
    only just before it) and take it apart."""
    assert answer.status == 200, (answer.status, answer.body)
    assert answer.headers["Content-Type"].startswith("text/event-stream"), answer.headers
    assert answer.body.endswith(b"\n\n"), answer.body[-200:]
    data, pings = [], 0
    for event in answer.body.decode().split("\n\n")[:-1]:
        if event.startswith(":"):
            assert event == ": ping", event
            pings += 1
        else:
            assert event.startswith("data: ") and "\n" not in event, event
            data.append(event[len("data: ") :])
    assert data and data[-1] == "[DONE]" and "[DONE]" not in data[:-1], data
    payloads = [json.loads(item) for item in data[:-1]]
    error = None
    if payloads and "error" in payloads[-1]:
        error = check_envelope(payloads.pop())
    assert not any("error" in payload for payload in payloads), payloads
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in payloads), payloads
    return Stream(payloads, error, pings)


def calls(fake: Any) -> list[dict[str, Any]]:
    """The chat calls a fake received (not the model listing done at start-up)."""
    return [r for r in fake.requests if r["method"] == "POST" and r["path"] in ("/v1/chat/completions", "/v1/messages")]


def providers_file(directory: Path, *providers: dict[str, Any]) -> str:
    """A PROVIDERS_CONFIG_FILE with these entries, in this (failover) order; JSON is YAML."""
    path = directory / "providers.yaml"
    path.write_text(json.dumps({"providers": list(providers)}))
    return str(path)


def vllm_entry(name: str, base_url: str, **fields: Any) -> dict[str, Any]:
    """A vLLM provider serving jan-v1-4b (declared, so nothing is listed at start-up)."""
    return {"name": name, "vendor": "vllm", "base_url": f"{base_url}/v1", "models": [VLLM_MODEL], **fields}


def unused_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@asynccontextmanager
async def two_vllms():
    """Two vLLM fakes serving the same model."""
    async with (
        running(FakeOpenAIUpstream(models=(VLLM_MODEL,))) as first,
        running(FakeOpenAIUpstream(models=(VLLM_MODEL,))) as second,
    ):
        yield first, second


async def serve_pair(serve, directory: Path, first: FakeOpenAIUpstream, second: FakeOpenAIUpstream, **env):
    """The app with providers vllm-a (``first``) and vllm-b (``second``), in that failover order; and a token."""
    config = providers_file(directory, vllm_entry("vllm-a", first.base_url), vllm_entry("vllm-b", second.base_url))
    server = await serve(PROVIDERS_CONFIG_FILE=config, **env)
    return server, await guest_token(server)
