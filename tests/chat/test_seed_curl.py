"""The seed's two curl examples work as written with ``"model": "jan-v1-4b"``.

The commands below are the original Jan Server docs' text. Each is split into arguments the way a
shell would, with only the URL and ``<token>`` (a guest token) substituted, and the real ``curl``
binary runs them against the app backed by the fake vLLM. curl reads its configuration from a
directory of the test's own (``CURL_HOME``), whose ``.curlrc`` only records the response headers to a
file: the command line stays exactly as written, and a user's own ``~/.curlrc`` cannot interfere.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
from pathlib import Path

import pytest

from tests.chat.conftest import guest_token

PLAIN_EXAMPLE = """\
curl -X POST http://localhost:8000/v1/chat/completions \\
 -H "Authorization: Bearer <token>" \\
 -H "Content-Type: application/json" \\
 -d '{
 "model": "jan-v1-4b",
 "messages": [
 {"role": "user", "content": "Hello!"}
 ],
 "temperature": 0.7,
 "max_tokens": 100
 }'
"""

STREAMED_EXAMPLE = """\
curl -X POST http://localhost:8000/v1/chat/completions \\
 -H "Authorization: Bearer <token>" \\
 -H "Content-Type: application/json" \\
 -d '{
 "model": "jan-v1-4b",
 "messages": [
 {"role": "user", "content": "Hello!"}
 ],
 "stream": true
 }'
"""

DOCS_ORIGIN = "http://localhost:8000"


def curl_binary() -> str:
    path = shutil.which("curl")
    if path is None:
        pytest.fail("these tests run the real curl binary, and there is no `curl` on PATH: install curl")
    return path


def arguments(example: str, origin: str, token: str) -> list[str]:
    """The example's argv as a shell splits it (line continuations joined), URL and token substituted."""
    argv = shlex.split(example.replace("\\\n", " "))
    assert argv[0] == "curl"
    return [curl_binary()] + [arg.replace(DOCS_ORIGIN, origin).replace("<token>", token) for arg in argv[1:]]


async def run_curl(example: str, server, tmp_path: Path) -> tuple[dict[str, str], str]:
    """Run the example; return the response headers (lower-cased names; ``status`` too) and the body."""
    headers_file = tmp_path / "headers.txt"
    (tmp_path / ".curlrc").write_text(f'dump-header = "{headers_file}"\n')
    argv = arguments(example, str(server.make_url("")).rstrip("/"), await guest_token(server))
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"CURL_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, f"curl exited {process.returncode}: {stderr.decode()}"
    status_line, *lines = headers_file.read_text().strip().splitlines()
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    headers["status"] = status_line.split()[1]
    return headers, stdout.decode()


def sse_events(body: str) -> list[str]:
    """The ``data:`` payloads of a text/event-stream body, in order (keep-alive comments skipped)."""
    events = []
    for block in body.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if lines:
            assert all(line.startswith("data: ") for line in lines), block
            events.append("\n".join(line[len("data: ") :] for line in lines))
    return events


async def test_plain_example(vllm_server, vllm, tmp_path):
    vllm.reply("Hello! How can I help you today?", usage=(10, 9))
    headers, body = await run_curl(PLAIN_EXAMPLE, vllm_server, tmp_path)

    assert headers["status"] == "200", body
    assert headers["content-type"].startswith("application/json")
    answer = json.loads(body)
    assert answer["object"] == "chat.completion" and answer["model"] == "vllm/jan-v1-4b"
    assert [(c["index"], c["message"]["role"], c["message"]["content"], c["finish_reason"]) for c in answer["choices"]] == [
        (0, "assistant", "Hello! How can I help you today?", "stop")
    ]
    usage = answer["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (10, 9, 19)

    sent = vllm.requests[-1]["json"]
    assert sent == {
        "model": "jan-v1-4b",
        "messages": [{"role": "user", "content": "Hello!"}],
        "temperature": 0.7,
        "max_tokens": 100,
        "stream": False,
    }


async def test_streamed_example(vllm_server, vllm, tmp_path):
    vllm.reply("Hello! How can I help you today?", usage=(10, 9))
    headers, body = await run_curl(STREAMED_EXAMPLE, vllm_server, tmp_path)

    assert headers["status"] == "200", body
    assert headers["content-type"].split(";")[0] == "text/event-stream"
    events = sse_events(body)
    assert events[-1] == "[DONE]" and events.count("[DONE]") == 1
    chunks = [json.loads(event) for event in events[:-1]]
    assert chunks, body
    assert {(c["id"], c["object"], c["created"], c["model"]) for c in chunks} == {
        (chunks[0]["id"], "chat.completion.chunk", chunks[0]["created"], "vllm/jan-v1-4b")
    }
    assert all(len(c["choices"]) == 1 and "usage" not in c for c in chunks)  # usage was not asked for
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "Hello! How can I help you today?"
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * (len(chunks) - 1) + ["stop"]

    sent = vllm.requests[-1]["json"]
    assert sent == {
        "model": "jan-v1-4b",
        "messages": [{"role": "user", "content": "Hello!"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
