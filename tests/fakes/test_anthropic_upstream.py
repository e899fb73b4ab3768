"""The fake Anthropic Messages API, exercised over real HTTP the way an Anthropic client uses the real one."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time

import aiohttp
import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic

KEY = "sk-ant-test"
HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
PNG_1PX = base64.b64encode(
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
).decode()
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather of a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
async def fake():
    server = FakeAnthropic()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


def body(**overrides):
    data = {"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": [{"role": "user", "content": "Salut"}]}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


async def post(http, fake, payload, headers=HEADERS):
    """POST /v1/messages; (status, parsed JSON body, headers)."""
    async with http.post(f"{fake.base_url}/v1/messages", json=payload, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None), resp.headers


async def stream(http, fake, payload):
    """POST a streaming request; (raw text, [(event name, data)]) after checking the SSE framing."""
    async with http.post(f"{fake.base_url}/v1/messages", json={**payload, "stream": True}, headers=HEADERS) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert re.fullmatch(r"req_011C\w{20}", resp.headers["request-id"])
        raw = (await resp.read()).decode()
    return raw, parse_sse(raw)


def parse_sse(raw: str) -> list[tuple[str, dict]]:
    assert raw.endswith("\n\n")
    events = []
    for chunk in raw[:-2].split("\n\n"):
        lines = chunk.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "), chunk
        name, data = lines[0][len("event: ") :], json.loads(lines[1][len("data: ") :])
        assert data["type"] == name
        events.append((name, data))
    return events


def assert_error(status, data, headers, want_status, error_type, message=None):
    assert status == want_status, data
    assert set(data) == {"type", "error", "request_id"}
    assert data["type"] == "error"
    assert data["error"]["type"] == error_type
    assert isinstance(data["error"]["message"], str) and data["error"]["message"]
    if message is not None:
        assert data["error"]["message"] == message
    assert data["request_id"] == headers["request-id"]
    assert re.fullmatch(r"req_011C\w{20}", headers["request-id"])


# -- authentication --------------------------------------------------------------------------------


async def test_api_key_and_version_are_required(fake, http):
    status, data, headers = await post(http, fake, body(), headers={"anthropic-version": "2023-06-01"})
    assert_error(status, data, headers, 401, "authentication_error", "x-api-key header is required")

    status, data, headers = await post(http, fake, body(), headers={**HEADERS, "x-api-key": "sk-ant-wrong"})
    assert_error(status, data, headers, 401, "authentication_error", "invalid x-api-key")

    status, data, headers = await post(http, fake, body(), headers={"x-api-key": KEY})
    assert_error(status, data, headers, 400, "invalid_request_error", "anthropic-version: header is required")

    async with http.get(f"{fake.base_url}/v1/models", headers={"anthropic-version": "2023-06-01"}) as resp:
        assert resp.status == 401

    # Newer official SDKs send the key as a bearer token; the API takes that too.
    status, _, _ = await post(http, fake, body(), headers={"Authorization": f"Bearer {KEY}", "anthropic-version": "2023-06-01"})
    assert status == 200
    status, data, headers = await post(
        http, fake, body(), headers={"Authorization": "Bearer sk-ant-wrong", "anthropic-version": "2023-06-01"}
    )
    assert_error(status, data, headers, 401, "authentication_error", "invalid x-api-key")

    status, data, _ = await post(http, fake, body())
    assert status == 200 and data["content"] == [{"type": "text", "text": "Bonjour !"}]


async def test_models_list_and_get(fake, http):
    async with http.get(f"{fake.base_url}/v1/models", headers=HEADERS) as resp:
        assert resp.status == 200
        data = await resp.json()
    assert data == {
        "data": [
            {
                "type": "model",
                "id": "claude-sonnet-4-5",
                "display_name": "Claude Sonnet 4.5",
                "created_at": "2025-09-29T00:00:00Z",
            },
            {"type": "model", "id": "claude-haiku-4-5", "display_name": "Claude Haiku 4.5", "created_at": "2025-10-15T00:00:00Z"},
        ],
        "has_more": False,
        "first_id": "claude-sonnet-4-5",
        "last_id": "claude-haiku-4-5",
    }
    async with http.get(f"{fake.base_url}/v1/models?limit=1", headers=HEADERS) as resp:
        page = await resp.json()
    assert [m["id"] for m in page["data"]] == ["claude-sonnet-4-5"] and page["has_more"] is True
    async with http.get(f"{fake.base_url}/v1/models/claude-haiku-4-5", headers=HEADERS) as resp:
        assert (await resp.json())["display_name"] == "Claude Haiku 4.5"
    async with http.get(f"{fake.base_url}/v1/models/claude-nope", headers=HEADERS) as resp:
        assert_error(resp.status, await resp.json(), resp.headers, 404, "not_found_error", "model: claude-nope")


# -- non-streaming answers -------------------------------------------------------------------------


async def test_text_reply_has_the_message_shape(fake, http):
    fake.reply("Il fait beau à Paris.", usage=(30, 7))
    status, data, headers = await post(http, fake, body(system="Sois bref."))
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert re.fullmatch(r"req_011C\w{20}", headers["request-id"])
    assert re.fullmatch(r"msg_01\w{22}", data.pop("id"))
    assert data == {
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Il fait beau à Paris."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 30,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 7,
            "service_tier": "standard",
        },
    }


async def test_tool_use_reply(fake, http):
    fake.reply(
        "Je regarde.",
        tool_use=[
            {"name": "get_weather", "input": {"city": "Paris"}},
            {"id": "toolu_01fixed", "name": "get_weather", "input": {"city": "Lyon"}},
        ],
    )
    status, data, _ = await post(http, fake, body(tools=[WEATHER_TOOL], tool_choice={"type": "auto"}))
    assert status == 200
    assert data["stop_reason"] == "tool_use"
    text, first, second = data["content"]
    assert text == {"type": "text", "text": "Je regarde."}
    assert re.fullmatch(r"toolu_01\w{22}", first["id"])
    assert first == {"type": "tool_use", "id": first["id"], "name": "get_weather", "input": {"city": "Paris"}}
    assert second == {"type": "tool_use", "id": "toolu_01fixed", "name": "get_weather", "input": {"city": "Lyon"}}

    # The next turn: the tool results answer those ids.
    conversation = [
        {"role": "user", "content": "Météo ?"},
        {"role": "assistant", "content": data["content"]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": data["content"][1]["id"], "content": "18°C"},
                {"type": "tool_result", "tool_use_id": "toolu_01fixed", "content": [{"type": "text", "text": "20°C"}]},
            ],
        },
    ]
    status, data, _ = await post(http, fake, body(messages=conversation, tools=[WEATHER_TOOL]))
    assert status == 200 and data["stop_reason"] == "end_turn"


async def test_stop_sequences_and_max_tokens_truncate(fake, http):
    fake.reply("one two three four five", usage=(10, 5))
    status, data, _ = await post(http, fake, body(stop_sequences=["four", "three"]))
    assert status == 200
    assert data["content"] == [{"type": "text", "text": "one two "}]
    assert (data["stop_reason"], data["stop_sequence"]) == ("stop_sequence", "three")

    fake.reply("one two three four five", usage=(10, 5))
    status, data, _ = await post(http, fake, body(max_tokens=2))
    assert data["content"] == [{"type": "text", "text": "one two"}]
    assert (data["stop_reason"], data["stop_sequence"]) == ("max_tokens", None)
    assert data["usage"]["output_tokens"] == 2

    # The stop sequence lies beyond max_tokens: max_tokens wins, and cut tool calls are dropped.
    fake.reply("one two three four five", tool_use=[{"name": "get_weather", "input": {}}])
    status, data, _ = await post(http, fake, body(max_tokens=1, stop_sequences=["five"], tools=[WEATHER_TOOL]))
    assert data["content"] == [{"type": "text", "text": "one"}] and data["stop_reason"] == "max_tokens"


async def test_thinking_only_when_enabled(fake, http):
    fake.reply("42", thinking="Let me think.")
    status, data, _ = await post(http, fake, body(max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 2048}))
    assert status == 200
    thinking, text = data["content"]
    assert thinking["type"] == "thinking" and thinking["thinking"] == "Let me think."
    assert base64.b64decode(thinking["signature"], validate=True)
    assert text == {"type": "text", "text": "42"}

    fake.reply("42", thinking="Let me think.")
    status, data, _ = await post(http, fake, body())
    assert data["content"] == [{"type": "text", "text": "42"}]


# -- streaming -------------------------------------------------------------------------------------


async def test_stream_event_sequence_and_text(fake, http):
    fake.reply("Bonjour tout le monde !", usage=(21, 6))
    raw, events = await stream(http, fake, body())
    names = [name for name, _ in events]
    assert names == ["message_start", "content_block_start", "ping"] + ["content_block_delta"] * 5 + [
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert 'event: ping\ndata: {"type": "ping"}\n\n' in raw  # spaced, as on the real wire

    start = events[0][1]["message"]
    assert re.fullmatch(r"msg_01\w{22}", start["id"])
    assert {k: v for k, v in start.items() if k != "id"} == {
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 21,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 1,
            "service_tier": "standard",
        },
    }
    assert events[1][1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    deltas = [d for n, d in events if n == "content_block_delta"]
    assert all(d["index"] == 0 and d["delta"]["type"] == "text_delta" for d in deltas)
    assert "".join(d["delta"]["text"] for d in deltas) == "Bonjour tout le monde !"
    assert events[-3][1] == {"type": "content_block_stop", "index": 0}
    assert events[-2][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 6},
    }
    assert events[-1][1] == {"type": "message_stop"}


async def test_stream_tool_use_input_json_reassembles(fake, http):
    arguments = {"city": "Paris", "units": "celsius", "days": [1, 2, 3], "note": "été"}
    fake.reply("Je regarde.", tool_use=[{"id": "toolu_01abc", "name": "get_weather", "input": arguments}])
    _, events = await stream(http, fake, body(tools=[WEATHER_TOOL]))
    starts = [d for n, d in events if n == "content_block_start"]
    assert starts[1] == {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "toolu_01abc", "name": "get_weather", "input": {}},
    }
    fragments = [d["delta"] for n, d in events if n == "content_block_delta" and d["index"] == 1]
    assert all(f["type"] == "input_json_delta" for f in fragments)
    assert fragments[0]["partial_json"] == "" and len(fragments) > 3
    assert json.loads("".join(f["partial_json"] for f in fragments)) == arguments
    assert [n for n, _ in events][-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


async def test_stream_thinking_block_comes_first(fake, http):
    fake.reply("42", thinking="Six times seven.")
    _, events = await stream(http, fake, body(max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 1024}))
    assert events[1][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    block0 = [d["delta"] for n, d in events if n == "content_block_delta" and d["index"] == 0]
    assert "".join(d["thinking"] for d in block0 if d["type"] == "thinking_delta") == "Six times seven."
    assert block0[-1]["type"] == "signature_delta" and block0[-1]["signature"]
    assert [d["type"] for d in block0[:-1]] == ["thinking_delta"] * (len(block0) - 1)
    assert [d["content_block"]["type"] for n, d in events if n == "content_block_start"] == ["thinking", "text"]


async def test_stream_applies_stop_sequences(fake, http):
    fake.reply("alpha beta gamma")
    _, events = await stream(http, fake, body(stop_sequences=["gamma"]))
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == "alpha beta "
    assert events[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "gamma"}


async def test_mid_stream_error_event(fake, http):
    fake.stream_error(after_events=4)
    raw, events = await stream(http, fake, body())
    assert [n for n, _ in events] == ["message_start", "content_block_start", "ping", "content_block_delta", "error"]
    assert raw.endswith('event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n')

    fake.fail(500, "api_error", "Internal server error", mid_stream=True, after_events=1)
    _, events = await stream(http, fake, body())
    assert events[-1] == ("error", {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}})

    fake.stream_error()  # a non-streaming call gets the HTTP error instead
    status, data, headers = await post(http, fake, body())
    assert_error(status, data, headers, 529, "overloaded_error", "Overloaded")


# -- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
            'messages: roles must alternate between "user" and "assistant", but found multiple "user" roles in a row',
        ),
        ({"messages": [{"role": "assistant", "content": "a"}]}, 'messages: first message must use the "user" role'),
        (
            {"messages": [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "Hi"}]},
            (
                'messages: Unexpected role "system". The Messages API accepts a top-level `system` parameter, not "system" '
                "as an input message role."
            ),
        ),
        ({"temperature": 1.5}, "temperature: Input should be less than or equal to 1"),
        ({"frequency_penalty": 0.5}, "frequency_penalty: Extra inputs are not permitted"),
        ({"max_tokens": None}, "max_tokens: Field required"),
        ({"messages": None}, "messages: Field required"),
        ({"model": None}, "model: Field required"),
        (
            {"temperature": 0.5, "top_p": 0.9},
            "`temperature` and `top_p` cannot both be specified for this model. Please use only one.",
        ),
        ({"system": [{"type": "image", "source": {}}]}, "system.0.type: Input should be 'text'"),
        ({"stop_sequences": "STOP"}, "stop_sequences: Input should be a valid list"),
        (
            {"max_tokens": 100000},
            "max_tokens: 100000 > 64000, which is the maximum allowed number of output tokens for claude-sonnet-4-5",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "data": "x"}]}]},
            (
                "messages.0.content.0: Input tag 'input_audio' found using 'type' does not match any of the expected tags: "
                "'text', 'image', 'document', 'tool_use', 'tool_result', 'thinking', 'redacted_thinking'"
            ),
        ),
        (
            {"messages": [{"role": "user", "content": ""}]},
            "messages: all messages must have non-empty content except for the optional final assistant message",
        ),
        (
            {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Sure, "}]},
            "messages: final assistant content cannot end with trailing whitespace",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": PNG_1PX}}],
                    }
                ]
            },
            (
                "messages.0.content.0.image.source.base64.data: The image was specified using the image/jpeg media type, "
                "but does not appear to be a valid image/jpeg image"
            ),
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "Météo ?"},
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "toolu_01x", "name": "get_weather", "input": {}}],
                    },
                    {"role": "user", "content": "Alors ?"},
                ]
            },
            (
                "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_01x. Each "
                "`tool_use` block must have a corresponding `tool_result` block in the next message."
            ),
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01y", "content": "18°C"}]}]},
            (
                "messages.0.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_01y. Each `tool_result` "
                "block must have a corresponding `tool_use` block in the previous message."
            ),
        ),
        (
            {"tools": [{"name": "get weather", "input_schema": {"type": "object"}}]},
            "tools.0.custom.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'",
        ),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, None),
        ({"tool_choice": {"type": "tool"}}, "tool_choice.tool.name: Field required"),
        ({"tool_choice": {"type": "required"}}, None),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 2048}},
            (
                "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at "
                "https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size"
            ),
        ),
    ],
)
async def test_invalid_requests_get_400(fake, http, overrides, message):
    payload = body(**{k: v for k, v in overrides.items() if v is not None})
    for key in [k for k, v in overrides.items() if v is None]:
        payload.pop(key)
    status, data, headers = await post(http, fake, payload)
    assert_error(status, data, headers, 400, "invalid_request_error", message)


async def test_invalid_requests_do_not_take_queued_behaviours(fake, http):
    fake.overloaded()
    status, _, _ = await post(http, fake, body(temperature=1.5))
    assert status == 400 and fake.pending == 1
    status, _, _ = await post(http, fake, body(model="claude-unknown-9"))
    assert status == 404 and fake.pending == 1
    status, _, _ = await post(http, fake, body())
    assert status == 529 and fake.pending == 0


async def test_unknown_model_is_404(fake, http):
    status, data, headers = await post(http, fake, body(model="claude-sonnet-9"))
    assert_error(status, data, headers, 404, "not_found_error", "model: claude-sonnet-9")


async def test_invalid_json_body(fake, http):
    async with http.post(f"{fake.base_url}/v1/messages", data=b"{nope", headers=HEADERS) as resp:
        assert_error(resp.status, await resp.json(), resp.headers, 400, "invalid_request_error")


# -- scripted failures -----------------------------------------------------------------------------


async def test_rate_limit_has_retry_after(fake, http):
    fake.fail(429, "rate_limit_error", "Number of requests has exceeded your per-minute rate limit")
    status, data, headers = await post(http, fake, body())
    assert_error(status, data, headers, 429, "rate_limit_error", "Number of requests has exceeded your per-minute rate limit")
    assert headers["retry-after"] == "1"
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"

    fake.rate_limited(retry_after=7)
    status, data, headers = await post(http, fake, body())
    assert status == 429 and headers["retry-after"] == "7"
    assert data["error"]["message"].startswith("Number of request tokens has exceeded your per-minute rate limit")


async def test_overloaded_is_529(fake, http):
    fake.overloaded()
    status, data, headers = await post(http, fake, body())
    assert_error(status, data, headers, 529, "overloaded_error", "Overloaded")
    status, data, _ = await post(http, fake, body())  # the queue is spent: back to the default reply
    assert status == 200 and data["content"][0]["text"] == "Bonjour !"


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, "invalid_request_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (500, "api_error"),
    ],
)
async def test_fail_renders_anthropic_errors(fake, http, status, error_type):
    fake.fail(status, error_type, f"{error_type} happened", headers={"x-extra": "1"})
    got_status, data, headers = await post(http, fake, body())
    assert_error(got_status, data, headers, status, error_type, f"{error_type} happened")
    assert headers["x-extra"] == "1"


async def test_queued_behaviours_run_in_order(fake, http):
    fake.reply("first")
    fake.fail(500, "api_error", "Internal server error")
    fake.reply("third")
    results = [await post(http, fake, body()) for _ in range(4)]
    assert [r[0] for r in results] == [200, 500, 200, 200]
    assert [r[1]["content"][0]["text"] for r in results if r[0] == 200] == ["first", "third", "Bonjour !"]


async def test_garbage(fake, http):
    fake.garbage()
    async with http.post(f"{fake.base_url}/v1/messages", json=body(), headers=HEADERS) as resp:
        assert resp.status == 200 and resp.content_type == "application/json"
        assert await resp.read() == b"{oops"
        with pytest.raises(json.JSONDecodeError):
            await resp.json()

    fake.garbage(b"not json at all")
    async with http.post(f"{fake.base_url}/v1/messages", json=body(stream=True), headers=HEADERS) as resp:
        assert resp.status == 200
        assert await resp.read() == b"event: message_start\ndata: not json at all\n\n"


async def test_cut_stream(fake, http):
    fake.cut(after_events=2)
    received = []
    async with http.post(f"{fake.base_url}/v1/messages", json=body(stream=True), headers=HEADERS) as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            async for line in resp.content:
                received.append(line.decode())
    names = [line.strip()[len("event: ") :] for line in received if line.startswith("event: ")]
    assert names == ["message_start", "content_block_start"]


async def test_cut_plain(fake, http):
    fake.cut(after_events=0)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post(http, fake, body())

    fake.cut(after_events=1)
    async with http.post(f"{fake.base_url}/v1/messages", json=body(), headers=HEADERS) as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    status, _, _ = await post(http, fake, body())  # the server itself is fine
    assert status == 200


async def test_delay(fake, http):
    fake.delay(0.6)
    with pytest.raises(asyncio.TimeoutError):
        async with http.post(
            f"{fake.base_url}/v1/messages", json=body(), headers=HEADERS, timeout=aiohttp.ClientTimeout(total=0.15)
        ):
            pass

    fake.delay(0.25)
    started = time.monotonic()
    status, data, _ = await post(http, fake, body())
    assert time.monotonic() - started >= 0.25
    assert status == 200 and data["content"][0]["text"] == "Bonjour !"


async def test_disconnected_is_set_when_the_client_leaves_mid_stream(fake, http):
    fake.reply(" ".join(f"word{i}" for i in range(200)), event_delay=0.01)
    assert not fake.disconnected.is_set()
    resp = await http.post(f"{fake.base_url}/v1/messages", json=body(stream=True), headers=HEADERS)
    assert resp.status == 200
    assert (await resp.content.readline()) == b"event: message_start\n"
    resp.close()  # drops the connection
    await asyncio.wait_for(fake.disconnected.wait(), timeout=3)


async def test_complete_stream_does_not_set_disconnected(fake, http):
    await stream(http, fake, body())
    await asyncio.sleep(0.05)
    assert not fake.disconnected.is_set()


async def test_requests_are_recorded(fake, http):
    await post(http, fake, body(system="Sois bref.", metadata={"user_id": "u-1"}))
    await post(http, fake, body(), headers={"anthropic-version": "2023-06-01"})
    async with http.get(f"{fake.base_url}/v1/models", headers=HEADERS):
        pass
    first, rejected, models = fake.requests
    assert (first["method"], first["path"]) == ("POST", "/v1/messages")
    assert first["headers"]["x-api-key"] == KEY and first["headers"]["anthropic-version"] == "2023-06-01"
    assert first["json"] == body(system="Sois bref.", metadata={"user_id": "u-1"})
    assert "x-api-key" not in rejected["headers"] and rejected["json"]["model"] == "claude-sonnet-4-5"
    assert (models["method"], models["path"], models["json"]) == ("GET", "/v1/models", None)
