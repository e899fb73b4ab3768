"""Faults of a streamed answer: once the stream has started (its 200 and first chunk are out), a failure
is one ``data: {"error": {...}}`` frame (the error envelope, its message naming the provider) and then
``data: [DONE]``, after the chunks that did arrive; before that, it is an ordinary JSON error answer.

Against real HTTP fakes of vLLM and of Anthropic's Messages API:

- the connection cut mid-way, or an error event from the provider: the chunks so far, an error frame,
  ``[DONE]``; the official SDK yields those chunks and then raises ``openai.APIError``;
- a stream outlasting STREAM_TIMEOUT (a limit on the whole streamed answer): an ``upstream_timeout``
  error frame after the first chunk, a 504 before it;
- shorter silences: ``: ping`` comment lines (SSE_KEEPALIVE_INTERVAL), and the answer completes;
- an event that is not JSON, or not a chunk: an ``invalid_upstream_response`` frame (a 502 before the
  first chunk);
- a provider failing mid-stream, even with a 502/503 error, is not retried nor failed over: its answer began.
"""

from __future__ import annotations

import openai
import pytest

from tests.chat.conftest import ANTHROPIC_KEY, guest_token, sdk
from tests.chat.faults_support import (
    CLAUDE_MODEL,
    MESSAGES,
    VLLM_MODEL,
    assert_error,
    calls,
    chat,
    serve_pair,
    stream_of,
    two_vllms,
)


@pytest.fixture
async def pair():
    async with two_vllms() as fakes:
        yield fakes


async def serve_vllm(serve, vllm, **env):
    server = await serve(VLLM_BASE_URL=f"{vllm.base_url}/v1", UPSTREAM_RETRIES=0, **env)
    return server, await guest_token(server)


async def serve_claude(serve, claude, **env):
    server = await serve(ANTHROPIC_API_KEY=ANTHROPIC_KEY, ANTHROPIC_BASE_URL=f"{claude.base_url}/v1", UPSTREAM_RETRIES=0, **env)
    return server, await guest_token(server)


def assert_frame(error, *, code: str, message: str) -> None:
    assert error is not None, "no error frame before [DONE]"
    assert (error["type"], error["param"], error["code"]) == ("upstream_error", None, code), error
    assert error["message"].startswith(message), error["message"]


def assert_unfinished(stream, model: str, text: str) -> None:
    """The chunks that arrived before the failure: ``text`` so far, one id and model, nothing finished."""
    assert stream.text == text
    assert stream.chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert {chunk["model"] for chunk in stream.chunks} == {model}
    assert len({chunk["id"] for chunk in stream.chunks}) == 1
    assert all(choice["finish_reason"] is None for chunk in stream.chunks for choice in chunk["choices"])


async def sdk_stream(server, token, model):
    """Run a streamed call through the official SDK: the content deltas it yielded, and what it raised."""
    deltas, raised = [], None
    async with sdk(server, token) as client:
        try:
            async for chunk in await client.chat.completions.create(model=model, messages=MESSAGES, stream=True):
                deltas += [choice.delta.content for choice in chunk.choices]
        except openai.APIError as error:
            raised = error
    return deltas, raised


# ---------------------------------------------------------------- cut mid-way, or an error event


async def test_a_vllm_stream_cut_midway_ends_with_an_error_frame_then_done(serve, vllm):
    server, token = await serve_vllm(serve, vllm)
    vllm.cut(2)  # the role chunk and "Bonjour", then the connection is aborted
    stream = stream_of(await chat(server, token, VLLM_MODEL, stream=True))
    assert_unfinished(stream, "vllm/jan-v1-4b", "Bonjour")
    assert_frame(stream.error, code="upstream_error", message="Provider vllm broke off its answer: ")
    assert len(calls(vllm)) == 1


async def test_a_vllm_error_event_mid_stream_ends_with_an_error_frame_then_done(serve, vllm):
    server, token = await serve_vllm(serve, vllm)
    vllm.stream_error(after_chunks=2, message="CUDA error: out of memory", status=500)
    stream = stream_of(await chat(server, token, VLLM_MODEL, stream=True))
    assert_unfinished(stream, "vllm/jan-v1-4b", "Bonjour")
    assert_frame(stream.error, code="upstream_error", message="Provider vllm failed mid-answer: CUDA error: out of memory")


async def test_an_old_vllm_flat_error_event_is_an_error_frame(serve, vllm):
    server, token = await serve_vllm(serve, vllm)
    # vLLM before 0.8 sent its error body flat, without the "error" wrapper.
    vllm.garbage(b'{"object": "error", "message": "engine dead", "type": "InternalServerError", "param": null, "code": 500}')
    stream = stream_of(await chat(server, token, VLLM_MODEL, stream=True))
    assert_unfinished(stream, "vllm/jan-v1-4b", "")
    assert_frame(stream.error, code="upstream_error", message="Provider vllm failed mid-answer: engine dead")


async def test_the_sdk_yields_the_chunks_then_raises_api_error(serve, vllm):
    server, token = await serve_vllm(serve, vllm)
    for behave, message in (
        (lambda: vllm.cut(2), "Provider vllm broke off its answer: "),
        (lambda: vllm.stream_error(after_chunks=2, message="boom"), "Provider vllm failed mid-answer: boom"),
    ):
        behave()
        deltas, raised = await sdk_stream(server, token, VLLM_MODEL)
        assert deltas == ["", "Bonjour"]
        assert type(raised) is openai.APIError and raised.message.startswith(message), raised
        assert raised.body["code"] == "upstream_error" and raised.body["type"] == "upstream_error"


async def test_an_anthropic_stream_cut_midway_ends_with_an_error_frame_then_done(serve, claude):
    server, token = await serve_claude(serve, claude)
    claude.cut(4)  # message_start, content_block_start, ping, the "Bonjour" delta; then the connection is aborted
    stream = stream_of(await chat(server, token, CLAUDE_MODEL, stream=True))
    assert_unfinished(stream, "anthropic/claude-sonnet-4-5", "Bonjour")
    assert_frame(stream.error, code="upstream_error", message="Provider anthropic broke off its answer: ")
    assert len(calls(claude)) == 1


async def test_an_anthropic_error_event_mid_stream_ends_with_an_error_frame_then_done(serve, claude):
    server, token = await serve_claude(serve, claude)
    claude.stream_error(after_events=4)
    stream = stream_of(await chat(server, token, CLAUDE_MODEL, stream=True))
    assert_unfinished(stream, "anthropic/claude-sonnet-4-5", "Bonjour")
    assert_frame(
        stream.error, code="upstream_error", message="Provider anthropic failed mid-answer: overloaded_error: Overloaded"
    )
    claude.stream_error(after_events=4, error_type="api_error", message="Internal server error")
    deltas, raised = await sdk_stream(server, token, CLAUDE_MODEL)
    assert deltas == ["", "Bonjour"]
    assert type(raised) is openai.APIError
    assert raised.message == "Provider anthropic failed mid-answer: api_error: Internal server error"
    assert len(calls(claude)) == 2


async def test_an_anthropic_stream_ending_before_message_stop_is_an_error_frame(serve, claude):
    server, token = await serve_claude(serve, claude)
    # message_start, then the end of the body: the answer began but never finished.
    claude.garbage(
        b'{"type": "message_start", "message": {"id": "msg_01X", "model": "claude-sonnet-4-5", '
        b'"usage": {"input_tokens": 8, "output_tokens": 1}}}'
    )
    stream = stream_of(await chat(server, token, CLAUDE_MODEL, stream=True))
    assert_unfinished(stream, "anthropic/claude-sonnet-4-5", "")
    assert_frame(
        stream.error, code="incomplete_upstream_response", message="Provider anthropic ended its answer before message_stop."
    )


# ---------------------------------------------------------------- before the first chunk


async def test_a_vllm_stream_broken_off_before_its_first_chunk_is_a_502(serve, vllm):
    server, token = await serve_vllm(serve, vllm)
    vllm.cut(0)  # the 200 and its headers, then the connection is aborted
    answer = await chat(server, token, VLLM_MODEL, stream=True)
    assert_error(answer, 502, type="upstream_error", code="upstream_error", message="Provider vllm broke off its answer: ")


async def test_an_anthropic_connection_dropped_before_any_answer_is_unavailable(serve, claude):
    server, token = await serve_claude(serve, claude)
    claude.cut(0)  # the connection is aborted before the status line
    answer = await chat(server, token, CLAUDE_MODEL, stream=True)
    assert_error(
        answer, 502, type="upstream_error", code="provider_unavailable", message="Provider anthropic cannot be reached: "
    )


# ---------------------------------------------------------------- slow, and keep-alives


async def test_a_vllm_stream_outlasting_STREAM_TIMEOUT_ends_with_a_timeout_frame(serve, vllm):
    server, token = await serve_vllm(serve, vllm, STREAM_TIMEOUT="0.5")
    vllm.stall(after_chunks=2, seconds=3)
    stream = stream_of(await chat(server, token, VLLM_MODEL, stream=True))
    assert_unfinished(stream, "vllm/jan-v1-4b", "Bonjour")
    assert_frame(stream.error, code="upstream_timeout", message="Provider vllm did not complete its answer in time.")


async def test_an_anthropic_stream_outlasting_STREAM_TIMEOUT_ends_with_a_timeout_frame(serve, claude):
    server, token = await serve_claude(serve, claude, STREAM_TIMEOUT="0.5")
    claude.reply(event_delay=2)  # message_start at once, then silence
    stream = stream_of(await chat(server, token, CLAUDE_MODEL, stream=True))
    assert_unfinished(stream, "anthropic/claude-sonnet-4-5", "")
    assert_frame(stream.error, code="upstream_timeout", message="Provider anthropic did not complete its answer in time.")


async def test_a_vllm_stream_without_a_first_chunk_in_time_is_a_504(serve, vllm):
    server, token = await serve_vllm(serve, vllm, STREAM_TIMEOUT="0.5")
    vllm.delay(3)  # the headers at once, the first chunk never in time
    answer = await chat(server, token, VLLM_MODEL, stream=True)
    assert_error(answer, 504, type="upstream_error", code="upstream_timeout", message="Provider vllm ")


async def test_an_anthropic_stream_without_an_answer_in_time_is_a_504(serve, claude):
    server, token = await serve_claude(serve, claude, STREAM_TIMEOUT="0.5")
    claude.delay(3)  # not even the status line in time
    answer = await chat(server, token, CLAUDE_MODEL, stream=True)
    assert_error(answer, 504, type="upstream_error", code="upstream_timeout", message="Provider anthropic ")


async def test_keep_alive_comments_fill_a_silence_and_the_stream_completes(serve, vllm):
    server, token = await serve_vllm(serve, vllm, SSE_KEEPALIVE_INTERVAL="0.1")
    vllm.stall(after_chunks=2, seconds=0.7)
    answer = await chat(server, token, VLLM_MODEL, stream=True)
    stream = stream_of(answer)
    assert stream.pings >= 1 and b"\n\n: ping\n\n" in answer.body
    assert stream.error is None
    assert stream.text == "Bonjour !"
    assert stream.chunks[-1]["choices"][0]["finish_reason"] == "stop"

    vllm.stall(after_chunks=2, seconds=0.7)
    deltas, raised = await sdk_stream(server, token, VLLM_MODEL)  # the SDK skips the comments
    assert raised is None and "".join(d or "" for d in deltas) == "Bonjour !"


# ---------------------------------------------------------------- unreadable events


async def test_a_vllm_event_that_is_not_json_is_an_error_frame(serve, vllm):
    server, token = await serve_vllm(serve, vllm)
    vllm.garbage()  # the role chunk, then `data: {not json`
    stream = stream_of(await chat(server, token, VLLM_MODEL, stream=True))
    assert_unfinished(stream, "vllm/jan-v1-4b", "")
    assert_frame(stream.error, code="invalid_upstream_response", message="Provider vllm sent an event that is not JSON.")


async def test_a_vllm_event_that_is_not_a_chunk_is_an_error_frame(serve, vllm):
    server, token = await serve_vllm(serve, vllm)
    vllm.garbage(b'{"choices": "Bonjour"}')  # the role chunk, then JSON of the wrong shape
    try:
        answer = await chat(server, token, VLLM_MODEL, stream=True)
    except TimeoutError:
        pytest.fail("the stream hung after the bad event: no error frame, no [DONE], the connection left open")
    stream = stream_of(answer)
    assert_unfinished(stream, "vllm/jan-v1-4b", "")
    assert_frame(stream.error, code="invalid_upstream_response", message="Provider vllm ")


@pytest.mark.parametrize("payload", [b"{oops", b"[1, 2]"], ids=["not-json", "not-an-object"])
async def test_an_anthropic_first_event_that_is_unreadable_is_a_502(serve, claude, payload):
    server, token = await serve_claude(serve, claude)
    claude.garbage(payload)  # the data of the message_start event: nothing began
    answer = await chat(server, token, CLAUDE_MODEL, stream=True)
    assert_error(answer, 502, type="upstream_error", code="invalid_upstream_response", message="Provider anthropic ")


# ---------------------------------------------------------------- no retry once the answer began


@pytest.mark.parametrize("status", [502, 503])
async def test_a_provider_failing_mid_stream_is_not_retried_nor_failed_over(serve, tmp_path, pair, status):
    first, second = pair
    server, token = await serve_pair(serve, tmp_path, first, second, UPSTREAM_RETRIES=2)
    first.stream_error(after_chunks=2, message="Service Unavailable", status=status)
    stream = stream_of(await chat(server, token, VLLM_MODEL, stream=True))
    assert_unfinished(stream, "vllm/jan-v1-4b", "Bonjour")
    assert_frame(stream.error, code="upstream_error", message="Provider vllm-a failed mid-answer: Service Unavailable")

    first.cut(2)
    stream = stream_of(await chat(server, token, VLLM_MODEL, stream=True))
    assert_unfinished(stream, "vllm/jan-v1-4b", "Bonjour")
    assert_frame(stream.error, code="upstream_error", message="Provider vllm-a broke off its answer: ")
    assert (len(calls(first)), len(calls(second))) == (2, 0)
