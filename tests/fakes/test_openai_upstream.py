"""The fake OpenAI-compatible upstream, driven by the official SDK and, where bytes matter, by raw aiohttp."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import aiohttp
import openai
import pytest

from tests.fakes.openai_upstream import FakeOpenAIUpstream

MODEL = "jan-v1-4b"
HELLO = [{"role": "user", "content": "Salut"}]
CHAT = {"model": MODEL, "messages": HELLO}


@contextlib.asynccontextmanager
async def running(**kwargs):
    upstream = FakeOpenAIUpstream(**kwargs)
    await upstream.start()
    try:
        yield upstream
    finally:
        await upstream.stop()


def sdk(upstream: FakeOpenAIUpstream, api_key: str = "x", **kwargs) -> openai.AsyncOpenAI:
    """The SDK as a strict client: no retries, and every response checked against its models."""
    return openai.AsyncOpenAI(
        base_url=f"{upstream.base_url}/v1", api_key=api_key, max_retries=0, _strict_response_validation=True, **kwargs
    )


@pytest.fixture
async def upstream():
    async with running() as fake:
        yield fake


@pytest.fixture
async def client(upstream):
    async with sdk(upstream) as c:
        yield c


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def post_chat(http, upstream, body: dict, **kwargs):
    """POST a chat completion; (status, headers, raw body)."""
    async with http.post(f"{upstream.base_url}/v1/chat/completions", json=body, **kwargs) as resp:
        return resp.status, resp.headers, await resp.read()


def sse_data(raw: bytes) -> list[str]:
    """The data of every SSE event, checking the framing: each event is exactly one `data: ` line."""
    assert raw.endswith(b"\n\n")
    events = raw[:-2].split(b"\n\n")
    assert all(e.startswith(b"data: ") and b"\n" not in e for e in events), raw
    return [e[len(b"data: ") :].decode() for e in events]


def chunks_of(data: list[str]) -> list[dict]:
    assert data[-1] == "[DONE]" and "[DONE]" not in data[:-1]
    return [json.loads(d) for d in data[:-1]]


async def eventually(predicate, timeout: float = 1.0) -> None:
    """Wait until the fake's side of a connection has caught up with what the client saw."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def ask(client, **kwargs):
    return await client.chat.completions.create(model=kwargs.pop("model", MODEL), messages=HELLO, **kwargs)


# -- models --------------------------------------------------------------------------------------------------------


async def test_models_are_listed_as_vllm_lists_them(upstream, client, http):
    page = await client.models.list()
    assert [m.id for m in page.data] == [MODEL]
    assert page.data[0].owned_by == "vllm"

    async with http.get(f"{upstream.base_url}/v1/models") as resp:
        assert resp.status == 200 and resp.content_type == "application/json"
        body = await resp.json()
    assert body["object"] == "list"
    (card,) = body["data"]
    assert set(card) == {"id", "object", "created", "owned_by", "root", "parent", "max_model_len", "permission"}
    assert (card["id"], card["object"], card["root"], card["parent"], card["max_model_len"]) == (
        MODEL,
        "model",
        MODEL,
        None,
        32768,
    )
    assert isinstance(card["created"], int) and card["permission"][0]["object"] == "model_permission"


async def test_models_in_the_openai_flavour_have_openai_fields_only(http):
    async with running(flavour="openai", models=("gpt-4o", "gpt-4o-mini")) as up, sdk(up) as c:
        assert [m.id for m in (await c.models.list()).data] == ["gpt-4o", "gpt-4o-mini"]
        assert (await c.models.retrieve("gpt-4o-mini")).owned_by == "system"
        async with http.get(f"{up.base_url}/v1/models") as resp:
            body = await resp.json()
            assert resp.headers["x-request-id"].startswith("req_")
    assert [set(card) for card in body["data"]] == [{"id", "object", "created", "owned_by"}] * 2


# -- non-streamed completions --------------------------------------------------------------------------------------


async def test_a_plain_completion_is_a_vllm_chat_completion(upstream, client, http):
    completion = await ask(client)
    assert completion.id.startswith("chatcmpl-") and completion.model == MODEL
    assert completion.choices[0].message.content == "Bonjour !"
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (21, 4, 25)

    upstream.reply("Salut toi", usage=(7, 3))
    status, headers, raw = await post_chat(http, upstream, CHAT)
    assert status == 200 and headers["Content-Type"] == "application/json"
    body = json.loads(raw)
    assert list(body) == [
        "id",
        "object",
        "created",
        "model",
        "choices",
        "service_tier",
        "system_fingerprint",
        "usage",
        "prompt_logprobs",
        "kv_transfer_params",
    ]
    assert body["object"] == "chat.completion" and isinstance(body["created"], int)
    assert body["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Salut toi",
                "refusal": None,
                "annotations": None,
                "audio": None,
                "function_call": None,
                "tool_calls": [],
                "reasoning_content": None,
            },
            "logprobs": None,
            "finish_reason": "stop",
            "stop_reason": None,
        }
    ]
    assert body["usage"] == {"prompt_tokens": 7, "total_tokens": 10, "completion_tokens": 3, "prompt_tokens_details": None}
    assert b": " not in raw  # compact JSON, as pydantic writes it


async def test_n_gives_as_many_choices(upstream, client):
    completion = await ask(client, n=2)
    assert [c.index for c in completion.choices] == [0, 1]
    assert [c.message.content for c in completion.choices] == ["Bonjour !", "Bonjour !"]

    upstream.reply("Oui")
    stream = await ask(client, n=2, stream=True)
    texts = {0: "", 1: ""}
    finished = {}
    async for chunk in stream:
        (choice,) = chunk.choices
        texts[choice.index] += choice.delta.content or ""
        if choice.finish_reason:
            finished[choice.index] = choice.finish_reason
    assert texts == {0: "Oui", 1: "Oui"} and finished == {0: "stop", 1: "stop"}


async def test_tool_calls_and_reasoning_in_a_plain_completion(upstream, client):
    upstream.reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}], reasoning="Il faut la météo.")
    completion = await ask(client)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.reasoning_content == "Il faut la météo."  # vLLM's extra field
    (call,) = choice.message.tool_calls
    assert call.id.startswith("chatcmpl-tool-") and call.type == "function"
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})


# -- streamed completions ------------------------------------------------------------------------------------------


async def test_a_stream_without_include_usage(upstream, http):
    upstream.reply("Il fait beau")
    status, headers, raw = await post_chat(http, upstream, {**CHAT, "stream": True})
    assert status == 200
    assert headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert headers["Transfer-Encoding"] == "chunked"
    chunks = chunks_of(sse_data(raw))
    assert len(chunks) == 5  # role, three words, finish
    assert len({(c["id"], c["created"]) for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == MODEL for c in chunks)
    assert all("usage" not in c for c in chunks)
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "Il"},
        {"content": " fait"},
        {"content": " beau"},
        {"content": ""},
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * 4 + ["stop"]
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {"content": ""},
        "logprobs": None,
        "finish_reason": "stop",
        "stop_reason": None,
    }


async def test_a_stream_with_include_usage_ends_with_the_usage_chunk(upstream, client, http):
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    upstream.reply("Il fait beau", usage=(30, 3))
    status, _, raw = await post_chat(http, upstream, body)
    chunks = chunks_of(sse_data(raw))
    assert status == 200 and len(chunks) == 6
    assert all(c["usage"] is None and len(c["choices"]) == 1 for c in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 30, "total_tokens": 33, "completion_tokens": 3}
    assert len({c["id"] for c in chunks}) == 1

    stream = await ask(client, stream=True, stream_options={"include_usage": True})
    received = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in received[:-1]) == "Bonjour !"
    assert received[-1].choices == [] and received[-1].usage.total_tokens == 25
    assert all(c.usage is None for c in received[:-1])


async def test_an_empty_stream_options_means_usage_for_vllm_not_for_openai(http):
    body = {**CHAT, "stream": True, "stream_options": {}}
    async with running() as up:
        chunks = chunks_of(sse_data((await post_chat(http, up, body))[2]))
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 25
    async with running(flavour="openai", models=(MODEL,)) as up:
        chunks = chunks_of(sse_data((await post_chat(http, up, body))[2]))
        assert all("usage" not in c for c in chunks)


async def test_the_openai_flavour_streams_openai_chunks(http):
    async with running(flavour="openai", models=(MODEL,)) as up:
        up.reply("Hi")
        status, headers, raw = await post_chat(http, up, {**CHAT, "stream": True, "stream_options": {"include_usage": True}})
    chunks = chunks_of(sse_data(raw))
    assert status == 200 and headers["x-request-id"].startswith("req_")
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert chunks[-1]["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0
    assert all(c["service_tier"] == "default" and c["system_fingerprint"].startswith("fp_") for c in chunks)


async def test_streamed_tool_calls_reassemble_into_json_arguments(upstream, client, http):
    arguments = {"city": "Saint-Étienne", "days": [1, 2, 3], "unit": "celsius"}
    calls = [{"name": "get_weather", "arguments": arguments}, {"name": "now", "arguments": "{}", "id": "call_7"}]
    upstream.reply(tool_calls=calls)
    stream = await ask(client, stream=True)
    assembled: dict[int, dict] = {}
    finish = None
    async for chunk in stream:
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for delta in choice.delta.tool_calls or ():
            call = assembled.setdefault(delta.index, {"id": None, "name": None, "arguments": ""})
            call["id"] = call["id"] or delta.id
            call["name"] = call["name"] or (delta.function.name if delta.function else None)
            call["arguments"] += (delta.function.arguments or "") if delta.function else ""
    assert finish == "tool_calls"
    assert assembled[0]["id"].startswith("chatcmpl-tool-") and assembled[1]["id"] == "call_7"
    assert [c["name"] for c in assembled.values()] == ["get_weather", "now"]
    assert json.loads(assembled[0]["arguments"]) == arguments and json.loads(assembled[1]["arguments"]) == {}

    upstream.reply(tool_calls=calls[:1])
    chunks = chunks_of(sse_data((await post_chat(http, upstream, {**CHAT, "stream": True}))[2]))
    deltas = [c["choices"][0]["delta"] for c in chunks]
    first = deltas[1]["tool_calls"][0]
    assert first["index"] == 0 and first["type"] == "function"
    assert first["function"] == {"name": "get_weather", "arguments": ""}
    fragments = [d["tool_calls"][0] for d in deltas[2:-1]]
    assert len(fragments) > 2 and all(set(f) == {"index", "function"} for f in fragments)
    assert deltas[-1] == {} and chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_reasoning_streams_before_the_content(upstream, http):
    upstream.reply("42", reasoning="Je calcule vite")
    chunks = chunks_of(sse_data((await post_chat(http, upstream, {**CHAT, "stream": True}))[2]))
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[1:4] == [{"reasoning_content": "Je"}, {"reasoning_content": " calcule"}, {"reasoning_content": " vite"}]
    assert deltas[4] == {"content": "42"}


# -- validation and errors -----------------------------------------------------------------------------------------


async def test_an_unknown_model_gets_vllm_s_error_body(upstream, client, http):
    status, _, raw = await post_chat(http, upstream, {**CHAT, "model": "gpt-5"})
    assert status == 404
    assert json.loads(raw) == {
        "object": "error",
        "message": "The model `gpt-5` does not exist.",
        "type": "NotFoundError",
        "param": None,
        "code": 404,
    }
    with pytest.raises(openai.NotFoundError) as caught:
        await ask(client, model="gpt-5")
    assert caught.value.type == "NotFoundError" and caught.value.code == "404"


async def test_an_unknown_model_gets_openai_s_error_body(http):
    async with running(flavour="openai", models=("gpt-4o",)) as up, sdk(up) as c:
        status, _, raw = await post_chat(http, up, {**CHAT, "model": "gpt-5"})
        with pytest.raises(openai.NotFoundError) as caught:
            await ask(c, model="gpt-5")
    assert status == 404
    assert json.loads(raw) == {
        "error": {
            "message": "The model `gpt-5` does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_found",
        }
    }
    assert caught.value.code == "model_not_found"


async def test_malformed_requests_are_refused_as_each_server_refuses_them(upstream, http):
    status, _, raw = await post_chat(http, upstream, {"model": MODEL})
    body = json.loads(raw)
    assert status == 400 and body["type"] == "BadRequestError" and body["code"] == 400
    assert "'messages'" in body["message"] and "Field required" in body["message"]

    status, _, raw = await post_chat(http, upstream, {**CHAT, "stream_options": {"include_usage": True}})
    assert status == 400 and "Stream options can only be defined when `stream=True`." in json.loads(raw)["message"]
    status, _, raw = await post_chat(http, upstream, {**CHAT, "stream": True, "stream_options": "yes"})
    assert status == 400 and "'stream_options'" in json.loads(raw)["message"]

    async with http.post(
        f"{upstream.base_url}/v1/chat/completions", data=b"{nope", headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == 400 and "json_invalid" in (await resp.json())["message"]

    # vLLM's `model` is optional: the served model answers
    status, _, raw = await post_chat(http, upstream, {"messages": HELLO})
    assert status == 200 and json.loads(raw)["model"] == MODEL
    assert upstream.pending == 0

    async with running(flavour="openai", models=(MODEL,)) as up:
        status, _, raw = await post_chat(http, up, {"messages": HELLO})
        assert status == 400 and json.loads(raw)["error"]["message"] == "you must provide a model parameter"
        status, _, raw = await post_chat(http, up, {"model": MODEL})
        assert status == 400 and json.loads(raw)["error"]["code"] == "missing_required_parameter"


async def test_validation_errors_do_not_consume_the_queue(upstream, http):
    upstream.reply("Gardé")
    assert (await post_chat(http, upstream, {**CHAT, "model": "nope"}))[0] == 404
    assert json.loads((await post_chat(http, upstream, CHAT))[2])["choices"][0]["message"]["content"] == "Gardé"


async def test_behaviours_are_a_queue_then_the_default(upstream, client):
    upstream.fail(500)
    upstream.reply("deux")
    with pytest.raises(openai.InternalServerError):
        await ask(client)
    assert (await ask(client)).choices[0].message.content == "deux"
    assert (await ask(client)).choices[0].message.content == "Bonjour !"


async def test_fail_reproduces_vllm_s_error_bodies(upstream, client, http):
    upstream.fail(500)
    status, _, raw = await post_chat(http, upstream, CHAT)
    assert status == 500 and json.loads(raw) == {
        "object": "error",
        "message": "Internal server error",
        "type": "InternalServerError",
        "param": None,
        "code": 500,
    }

    upstream.fail(400)
    with pytest.raises(openai.BadRequestError) as caught:
        await ask(client)
    assert "This model's maximum context length is 32768 tokens" in caught.value.message
    assert caught.value.type == "BadRequestError"

    upstream.fail(503)
    with pytest.raises(openai.InternalServerError) as caught:
        await ask(client)
    assert caught.value.status_code == 503 and caught.value.body["type"] == "ServiceUnavailableError"

    upstream.fail(422, {"object": "error", "message": "custom", "type": "X", "param": None, "code": 422})
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        await ask(client, stream=True)  # an error before the stream is plain JSON, not SSE
    assert caught.value.message == "Error code: 422 - custom"


async def test_fail_429_is_openai_style_with_retry_after(upstream, client, http):
    upstream.fail(429)
    status, headers, raw = await post_chat(http, upstream, CHAT)
    assert status == 429 and headers["Retry-After"] == "1"
    error = json.loads(raw)["error"]
    assert (error["type"], error["code"], error["param"]) == ("requests", "rate_limit_exceeded", None)
    assert error["message"].startswith(f"Rate limit reached for {MODEL}")

    upstream.fail(429, headers={"Retry-After": "7"})
    with pytest.raises(openai.RateLimitError) as caught:
        await ask(client)
    assert caught.value.response.headers["retry-after"] == "7" and caught.value.code == "rate_limit_exceeded"


async def test_fail_with_a_text_or_bytes_body(upstream, http):
    upstream.fail(502, "<html>Bad Gateway</html>", headers={"Content-Type": "text/html"})
    upstream.fail(500, b"\x00\xff")
    status, headers, raw = await post_chat(http, upstream, CHAT)
    assert (status, headers["Content-Type"], raw) == (502, "text/html", b"<html>Bad Gateway</html>")
    status, _, raw = await post_chat(http, upstream, CHAT)
    assert (status, raw) == (500, b"\x00\xff")


async def test_garbage_is_a_200_that_is_not_json(upstream, client, http):
    upstream.garbage(b"<<oops>>")
    status, headers, raw = await post_chat(http, upstream, CHAT)
    assert (status, headers["Content-Type"], raw) == (200, "application/json", b"<<oops>>")

    upstream.garbage()
    with pytest.raises(json.JSONDecodeError):
        await ask(client)

    upstream.garbage()
    stream = await ask(client, stream=True)
    received = []
    with pytest.raises(json.JSONDecodeError):
        async for chunk in stream:
            received.append(chunk)
    assert [c.choices[0].delta.role for c in received] == ["assistant"]


async def test_a_stream_error_event_after_the_200(upstream, client, http):
    upstream.stream_error(after_chunks=2, message="CUDA out of memory")
    chunks = sse_data((await post_chat(http, upstream, {**CHAT, "stream": True}))[2])
    assert json.loads(chunks[2]) == {
        "error": {"object": "error", "message": "CUDA out of memory", "type": "BadRequestError", "param": None, "code": 400}
    }
    assert chunks[3:] == ["[DONE]"]

    upstream.stream_error(after_chunks=1, message="boom")
    stream = await ask(client, stream=True)
    with pytest.raises(openai.APIError) as caught:
        async for _ in stream:
            pass
    assert caught.value.message == "boom" and not isinstance(caught.value, openai.APIStatusError)


# -- timing and connection faults ----------------------------------------------------------------------------------


async def test_delay_holds_the_answer_back(upstream, client):
    upstream.delay(0.3)
    started = time.monotonic()
    assert (await ask(client)).choices[0].message.content == "Bonjour !"
    assert time.monotonic() - started >= 0.3

    upstream.delay(2)
    with pytest.raises(openai.APITimeoutError):
        await ask(client, timeout=0.2)


async def test_delay_in_a_stream_sends_the_headers_then_waits(upstream, http):
    upstream.delay(0.3)
    started = time.monotonic()
    async with http.post(f"{upstream.base_url}/v1/chat/completions", json={**CHAT, "stream": True}) as resp:
        assert resp.status == 200 and time.monotonic() - started < 0.25
        first = await resp.content.readuntil(b"\n\n")
        assert time.monotonic() - started >= 0.3
        assert json.loads(first[len(b"data: ") :])["choices"][0]["delta"]["role"] == "assistant"


async def test_stall_pauses_after_n_chunks_then_finishes(upstream, http):
    upstream.stall(after_chunks=2, seconds=0.3)
    async with http.post(f"{upstream.base_url}/v1/chat/completions", json={**CHAT, "stream": True}) as resp:
        for _ in range(2):
            await resp.content.readuntil(b"\n\n")
        assert upstream.active_streams == 1
        before = time.monotonic()
        third = await resp.content.readuntil(b"\n\n")
        assert time.monotonic() - before >= 0.25
        rest = await resp.content.read()
    assert json.loads(third[len(b"data: ") :])["choices"][0]["delta"] == {"content": " !"}
    assert rest.endswith(b"data: [DONE]\n\n")
    await eventually(lambda: upstream.active_streams == 0)
    assert not upstream.disconnected.is_set()


async def test_a_client_read_timeout_during_a_stall_disconnects(upstream, http):
    upstream.stall(after_chunks=1, seconds=5)
    with pytest.raises(asyncio.TimeoutError):
        async with http.post(
            f"{upstream.base_url}/v1/chat/completions",
            json={**CHAT, "stream": True},
            timeout=aiohttp.ClientTimeout(sock_read=0.2),
        ) as resp:
            await resp.read()
    await asyncio.wait_for(upstream.disconnected.wait(), 2)
    assert upstream.active_streams == 0


async def test_disconnected_is_set_when_the_client_stops_reading_and_closes(upstream, client):
    upstream.stall(after_chunks=2, seconds=5)
    stream = await ask(client, stream=True)
    received = []
    async for chunk in stream:
        received.append(chunk)
        if len(received) == 2:
            break
    assert upstream.active_streams == 1 and not upstream.disconnected.is_set()
    await stream.close()
    await asyncio.wait_for(upstream.disconnected.wait(), 2)
    assert upstream.active_streams == 0


async def test_cut_closes_the_stream_without_done(upstream, client, http):
    upstream.cut(after_chunks=2)
    async with http.post(f"{upstream.base_url}/v1/chat/completions", json={**CHAT, "stream": True}) as resp:
        assert resp.status == 200
        events = [await resp.content.readuntil(b"\n\n") for _ in range(2)]
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.content.read()
    assert all(b"[DONE]" not in e for e in events)

    upstream.cut(after_chunks=2)
    stream = await ask(client, stream=True)
    received = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            received.append(chunk)
    assert len(received) == 2
    assert not upstream.disconnected.is_set()  # the fake hung up, not the client

    upstream.cut(after_chunks=0)  # not streamed: the connection drops without a response
    with pytest.raises(openai.APIConnectionError):
        await ask(client)


async def test_refused_connections_look_like_a_server_that_is_down(upstream, client, http):
    url = upstream.base_url
    upstream.stall(after_chunks=1, seconds=5)
    async with http.post(f"{url}/v1/chat/completions", json={**CHAT, "stream": True}) as resp:
        await resp.content.readuntil(b"\n\n")
        upstream.refuse_connections()  # the open stream dies too
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.content.read()
    assert not upstream.disconnected.is_set()

    with pytest.raises(openai.APIConnectionError):
        await client.models.list()
    with pytest.raises(aiohttp.ClientConnectionError):
        await post_chat(http, upstream, CHAT)

    upstream.accept_connections()
    assert upstream.base_url == url
    assert (await ask(client)).choices[0].message.content == "Bonjour !"


async def test_stop_drops_open_streams_at_once(http):
    up = FakeOpenAIUpstream()
    await up.start()
    up.stall(after_chunks=1, seconds=30)
    async with http.post(f"{up.base_url}/v1/chat/completions", json={**CHAT, "stream": True}) as resp:
        await resp.content.readuntil(b"\n\n")
        started = time.monotonic()
        await up.stop()
        assert time.monotonic() - started < 1
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.content.read()
    assert up.active_streams == 0 and not up.disconnected.is_set()
    with pytest.raises(aiohttp.ClientConnectionError):
        await post_chat(http, up, CHAT)


# -- authentication and recording ----------------------------------------------------------------------------------


async def test_api_key_is_enforced_as_vllm_enforces_it(http):
    async with running(api_key="sekret") as up:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            async with http.get(f"{up.base_url}/v1/models", headers=headers) as resp:
                assert resp.status == 401 and await resp.json() == {"error": "Unauthorized"}
        async with http.get(f"{up.base_url}/health") as resp:
            assert resp.status == 200  # outside /v1: no key needed
        async with sdk(up, api_key="wrong") as c:
            with pytest.raises(openai.AuthenticationError):
                await ask(c)
        async with sdk(up, api_key="sekret") as c:
            assert (await ask(c)).choices[0].message.content == "Bonjour !"
        assert up.pending == 0


async def test_api_key_is_enforced_as_openai_enforces_it(http):
    async with running(api_key="sk-right-key-1234", flavour="openai", models=(MODEL,)) as up:
        async with sdk(up, api_key="sk-wrong-key-9876") as c:
            with pytest.raises(openai.AuthenticationError) as caught:
                await ask(c)
        async with http.get(f"{up.base_url}/v1/models") as resp:
            missing = await resp.json()
        async with sdk(up, api_key="sk-right-key-1234") as c:
            assert [m.id for m in (await c.models.list()).data] == [MODEL]
    error = caught.value.body
    assert error["message"].startswith("Incorrect API key provided: sk-") and "9876" in error["message"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", None, "invalid_api_key")
    assert missing["error"]["message"].startswith("You didn't provide an API key.")


async def test_requests_are_recorded_with_what_was_forwarded(upstream, client):
    await client.models.list()
    await ask(
        client,
        stream=True,
        stream_options={"include_usage": True},
        temperature=0.2,
        max_tokens=64,
        extra_headers={"X-Trace": "t-1"},
    )
    models, chat = upstream.requests
    assert (models["method"], models["path"], models["json"]) == ("GET", "/v1/models", None)
    assert (chat["method"], chat["path"]) == ("POST", "/v1/chat/completions")
    assert chat["json"] == {
        "model": MODEL,
        "messages": HELLO,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.2,
        "max_tokens": 64,
    }
    assert chat["headers"]["authorization"] == "Bearer x" and chat["headers"]["x-trace"] == "t-1"


async def test_unknown_routes_answer_like_fastapi(upstream, http):
    async with http.get(f"{upstream.base_url}/v1/nothing") as resp:
        assert resp.status == 404 and await resp.json() == {"detail": "Not Found"}
    async with http.get(f"{upstream.base_url}/v1/chat/completions") as resp:
        assert resp.status == 405 and await resp.json() == {"detail": "Method Not Allowed"}
