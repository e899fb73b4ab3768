"""Faults of a provider before its answer began: each one a documented status and error envelope.

Against real HTTP fakes of vLLM (FakeOpenAIUpstream) and of Anthropic's Messages API (FakeAnthropic):

- down (connections reset, nobody listening, connection dropped before any answer) or answering 502/503
  (or Anthropic's 529 "overloaded"):
  retried UPSTREAM_RETRIES times with backoff, passed over for the next provider serving the model, and in
  the end a 502 ``provider_unavailable`` naming the provider, streamed or not (no stream is started);
- slower than UPSTREAM_TIMEOUT: a 504 ``upstream_timeout``, not retried;
- its 500: a 502 naming it; its 401/403: a 502 ``upstream_auth_failed``; its
  400/404/413: the same status with its message (422: a 400); its 429: a 429 carrying its Retry-After.
  None of these is retried or failed over;
- an answer that is not JSON, or JSON of the wrong shape: a 502 ``invalid_upstream_response``.

No fault is a 500, and every error answer is exactly the ``{"error": {message, type, param, code}}`` envelope.
Faults once a stream has started are in test_faults_stream.py.
"""

from __future__ import annotations

import openai
import pytest

from tests.chat.conftest import ANTHROPIC_KEY, guest_token
from tests.chat.faults_support import (
    CLAUDE_MODEL,
    VLLM_MODEL,
    assert_error,
    calls,
    chat,
    providers_file,
    serve_pair,
    stream_of,
    two_vllms,
    unused_port,
    vllm_entry,
)
from tests.fakes.loopback import running
from tests.fakes.openai_upstream import FakeOpenAIUpstream

BOTH = (False, True)  # stream off, then on: before a stream started, a failure is the same JSON error
BOTH_WAYS = pytest.mark.parametrize("stream", BOTH, ids=["plain", "streamed"])


@pytest.fixture
async def pair():
    async with two_vllms() as fakes:
        yield fakes


def answered_by(answer, stream: bool) -> str:
    """The text of a successful answer, plain or streamed."""
    if stream:
        return stream_of(answer).text
    assert answer.status == 200, answer.body
    return answer.json()["choices"][0]["message"]["content"]


# ---------------------------------------------------------------- down, or answering 502/503


async def test_a_provider_resetting_every_connection_is_a_502_naming_it(serve, vllm):
    server = await serve(VLLM_BASE_URL=f"{vllm.base_url}/v1", UPSTREAM_RETRIES=2)
    token = await guest_token(server)
    vllm.refuse_connections()
    for stream in BOTH:  # three attempts each, with pauses between them
        answer = await chat(server, token, VLLM_MODEL, stream=stream)
        assert_error(answer, 502, type="upstream_error", code="provider_unavailable", message="Provider vllm cannot be reached: ")
    assert calls(vllm) == []


@BOTH_WAYS
async def test_a_provider_nobody_listens_for_is_a_502_after_the_retries(serve, tmp_path, stream):
    config = providers_file(tmp_path, vllm_entry("local-vllm", f"http://127.0.0.1:{unused_port()}"))
    server = await serve(PROVIDERS_CONFIG_FILE=config, UPSTREAM_RETRIES=2)
    answer = await chat(server, await guest_token(server), VLLM_MODEL, stream=stream)
    assert_error(
        answer, 502, type="upstream_error", code="provider_unavailable", message="Provider local-vllm cannot be reached: "
    )


async def test_an_anthropic_provider_that_is_gone_is_a_502_naming_it(claude, claude_server):
    token = await guest_token(claude_server)
    await claude.stop()
    for stream in BOTH:
        answer = await chat(claude_server, token, CLAUDE_MODEL, stream=stream)
        assert_error(
            answer, 502, type="upstream_error", code="provider_unavailable", message="Provider anthropic cannot be reached: "
        )


@BOTH_WAYS
async def test_a_503_is_retried_UPSTREAM_RETRIES_times_then_a_502(serve, vllm, stream):
    server = await serve(VLLM_BASE_URL=f"{vllm.base_url}/v1", UPSTREAM_RETRIES=2)
    for _ in range(3):
        vllm.fail(503)
    answer = await chat(server, await guest_token(server), VLLM_MODEL, stream=stream)
    assert_error(
        answer,
        502,
        type="upstream_error",
        code="provider_unavailable",
        message="Provider vllm answered 503: The server is not ready to serve requests.",
    )
    assert len(calls(vllm)) == 3 and vllm.pending == 0


async def test_a_retry_that_succeeds_is_the_answer(serve, vllm):
    server = await serve(VLLM_BASE_URL=f"{vllm.base_url}/v1", UPSTREAM_RETRIES=2)
    token = await guest_token(server)
    for stream in BOTH:
        vllm.fail(502, {"detail": "Bad Gateway"})
        vllm.reply("Enfin !")
        answer = await chat(server, token, VLLM_MODEL, stream=stream)
        assert answered_by(answer, stream) == "Enfin !"
    assert len(calls(vllm)) == 4


async def test_an_anthropic_503_is_retried_then_a_502(serve, claude):
    server = await serve(ANTHROPIC_API_KEY=ANTHROPIC_KEY, ANTHROPIC_BASE_URL=f"{claude.base_url}/v1", UPSTREAM_RETRIES=1)
    for _ in range(2):
        claude.fail(503, "api_error", "Service Unavailable")
    answer = await chat(server, await guest_token(server), CLAUDE_MODEL)
    assert_error(
        answer,
        502,
        type="upstream_error",
        code="provider_unavailable",
        message="Provider anthropic answered 503: Service Unavailable",
    )
    assert len(calls(claude)) == 2


async def test_a_connection_dropped_before_any_answer_is_unavailable(vllm, vllm_server):
    vllm.cut(0)  # not streamed: the connection closes without a response
    answer = await chat(vllm_server, await guest_token(vllm_server), VLLM_MODEL)
    assert_error(
        answer,
        502,
        type="upstream_error",
        code="provider_unavailable",
        message="Provider vllm cannot be reached: Server disconnected.",
    )
    assert len(calls(vllm)) == 1


# ---------------------------------------------------------------- failover


async def test_a_502_or_503_fails_over_to_the_next_provider(serve, tmp_path, pair):
    first, second = pair
    server, token = await serve_pair(serve, tmp_path, first, second, UPSTREAM_RETRIES=0)
    for status in (502, 503):
        for stream in BOTH:
            first.fail(status)
            second.reply(f"Depuis le second ({status}).")
            answer = await chat(server, token, VLLM_MODEL, stream=stream)
            assert answered_by(answer, stream) == f"Depuis le second ({status}).", (status, stream)
    assert (len(calls(first)), len(calls(second))) == (4, 4)


async def test_a_provider_that_is_down_is_passed_over(serve, tmp_path, pair):
    first, second = pair
    server, token = await serve_pair(serve, tmp_path, first, second, UPSTREAM_RETRIES=2)
    first.refuse_connections()
    for stream in BOTH:
        second.reply("Toujours là.")
        answer = await chat(server, token, VLLM_MODEL, stream=stream)
        assert answered_by(answer, stream) == "Toujours là."
    assert (len(calls(first)), len(calls(second))) == (0, 2)  # no retry round: the second answered at once


async def test_a_round_where_every_provider_is_unavailable_is_repeated(serve, tmp_path, pair):
    first, second = pair
    server, token = await serve_pair(serve, tmp_path, first, second, UPSTREAM_RETRIES=1)
    first.fail(503)
    first.reply("Au second tour.")
    second.fail(502)
    answer = await chat(server, token, VLLM_MODEL)
    assert answered_by(answer, False) == "Au second tour."
    assert (len(calls(first)), len(calls(second))) == (2, 1)


@pytest.mark.parametrize("status, expected", [(500, 502), (429, 429), (400, 400), (401, 502)])
async def test_other_errors_are_the_answer_without_failover(serve, tmp_path, pair, status, expected):
    first, second = pair
    server, token = await serve_pair(serve, tmp_path, first, second, UPSTREAM_RETRIES=2)
    first.fail(status)
    answer = await chat(server, token, VLLM_MODEL)
    assert answer.status == expected
    assert "Provider vllm-a " in answer.json()["error"]["message"]
    assert (len(calls(first)), len(calls(second))) == (1, 0)


# ---------------------------------------------------------------- slow


async def test_a_provider_slower_than_UPSTREAM_TIMEOUT_is_a_504_not_retried(serve, vllm):
    server = await serve(VLLM_BASE_URL=f"{vllm.base_url}/v1", UPSTREAM_TIMEOUT="0.3", UPSTREAM_RETRIES=2)
    vllm.delay(3)
    answer = await chat(server, await guest_token(server), VLLM_MODEL)
    assert_error(answer, 504, type="upstream_error", code="upstream_timeout", message="Provider vllm did not answer in time.")
    assert len(calls(vllm)) == 1


async def test_a_slow_anthropic_provider_is_a_504(serve, claude):
    server = await serve(
        ANTHROPIC_API_KEY=ANTHROPIC_KEY, ANTHROPIC_BASE_URL=f"{claude.base_url}/v1", UPSTREAM_TIMEOUT="0.3", UPSTREAM_RETRIES=0
    )
    claude.delay(3)
    answer = await chat(server, await guest_token(server), CLAUDE_MODEL)
    assert_error(
        answer, 504, type="upstream_error", code="upstream_timeout", message="Provider anthropic did not answer in time."
    )


# ---------------------------------------------------------------- error statuses


VLLM_STATUSES = [
    # upstream status, our status, type, code, message
    (500, 502, "upstream_error", "upstream_error", "Provider vllm answered 500: Internal server error"),
    (401, 502, "upstream_error", "upstream_auth_failed", "Provider vllm refused our credentials (401): "),
    (403, 502, "upstream_error", "upstream_auth_failed", "Provider vllm refused our credentials (403): "),
    (
        400,
        400,
        "invalid_request_error",
        "upstream_invalid_request",
        "Provider vllm answered 400: This model's maximum context length is 32768 tokens.",
    ),
    (
        404,
        404,
        "invalid_request_error",
        "upstream_not_found",
        "Provider vllm answered 404: The model `jan-v1-4b` does not exist.",
    ),
    (413, 413, "invalid_request_error", "upstream_request_too_large", "Provider vllm answered 413: "),
    (422, 400, "invalid_request_error", "upstream_invalid_request", "Provider vllm answered 422: "),
]


@pytest.mark.parametrize("upstream, status, type, code, message", VLLM_STATUSES, ids=[str(s[0]) for s in VLLM_STATUSES])
async def test_a_vllm_error_status_is_mapped(vllm, vllm_server, upstream, status, type, code, message):
    token = await guest_token(vllm_server)
    for stream in BOTH:  # the same before a stream started: no SSE, the JSON error
        vllm.fail(upstream)
        answer = await chat(vllm_server, token, VLLM_MODEL, stream=stream)
        assert_error(answer, status, type=type, code=code, message=message)
    assert len(calls(vllm)) == 2


async def test_a_key_vllm_refuses_is_a_502_upstream_auth_failed(serve, tmp_path):
    async with running(FakeOpenAIUpstream(models=(VLLM_MODEL,), api_key="the-right-key")) as upstream:
        config = providers_file(tmp_path, vllm_entry("secured-vllm", upstream.base_url, api_key="a-wrong-key"))
        server = await serve(PROVIDERS_CONFIG_FILE=config, UPSTREAM_RETRIES=2)
        answer = await chat(server, await guest_token(server), VLLM_MODEL)
        assert_error(
            answer,
            502,
            type="upstream_error",
            code="upstream_auth_failed",
            message="Provider secured-vllm refused our credentials (401): Unauthorized",
        )
        assert calls(upstream)[0]["headers"]["authorization"] == "Bearer a-wrong-key"
        assert len(calls(upstream)) == 1


async def test_a_429_is_a_429_with_the_providers_retry_after(vllm, vllm_server):
    token = await guest_token(vllm_server)
    for stream in BOTH:
        vllm.fail(429, headers={"Retry-After": "7"})
        answer = await chat(vllm_server, token, VLLM_MODEL, stream=stream)
        assert_error(
            answer,
            429,
            type="rate_limit_error",
            code="upstream_rate_limited",
            message="Provider vllm answered 429: Rate limit reached for jan-v1-4b",
        )
        assert answer.headers["Retry-After"] == "7"


async def test_a_429_without_retry_after_still_says_when_to_retry(vllm, vllm_server):
    vllm.fail(429, {"error": {"message": "slow down"}}, headers={})
    answer = await chat(vllm_server, await guest_token(vllm_server), VLLM_MODEL)
    assert_error(
        answer, 429, type="rate_limit_error", code="upstream_rate_limited", message="Provider vllm answered 429: slow down"
    )
    assert answer.headers["Retry-After"] == "1"


async def test_the_sdk_sees_a_rate_limit_error_carrying_retry_after(vllm, oai):
    vllm.fail(429, headers={"Retry-After": "3"})
    with pytest.raises(openai.RateLimitError) as caught:
        await oai.chat.completions.create(model=VLLM_MODEL, messages=[{"role": "user", "content": "Salut"}])
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "3"
    assert caught.value.code == "upstream_rate_limited"


async def test_the_sdk_sees_an_upstream_500_as_a_502(vllm, oai):
    vllm.fail(500)
    with pytest.raises(openai.InternalServerError) as caught:
        await oai.chat.completions.create(model=VLLM_MODEL, messages=[{"role": "user", "content": "Salut"}])
    assert caught.value.status_code == 502
    assert caught.value.body == {
        "message": "Provider vllm answered 500: Internal server error",
        "type": "upstream_error",
        "param": None,
        "code": "upstream_error",
    }


ANTHROPIC_FAILURES = [
    # queued failure, our status, type, code, message
    (("overloaded",), 502, "upstream_error", "provider_unavailable", "Provider anthropic answered 529: Overloaded"),
    (
        (500, "api_error", "Internal server error"),
        502,
        "upstream_error",
        "upstream_error",
        "Provider anthropic answered 500: Internal server error",
    ),
    (
        (403, "permission_error", "Your API key does not have permission to use the specified resource."),
        502,
        "upstream_error",
        "upstream_auth_failed",
        "Provider anthropic refused our credentials (403): Your API key",
    ),
    (
        (400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"),
        400,
        "invalid_request_error",
        "upstream_invalid_request",
        "Provider anthropic answered 400: prompt is too long: 210000 tokens > 200000 maximum",
    ),
    (
        (404, "not_found_error", "model: claude-sonnet-4-5"),
        404,
        "invalid_request_error",
        "upstream_not_found",
        "Provider anthropic answered 404: model: claude-sonnet-4-5",
    ),
]


@pytest.mark.parametrize("failure, status, type, code, message", ANTHROPIC_FAILURES, ids=["529", "500", "403", "400", "404"])
async def test_an_anthropic_error_status_is_mapped(claude, claude_server, failure, status, type, code, message):
    token = await guest_token(claude_server)
    for stream in BOTH:
        if failure == ("overloaded",):
            claude.overloaded()
        else:
            claude.fail(*failure)
        answer = await chat(claude_server, token, CLAUDE_MODEL, stream=stream)
        assert_error(answer, status, type=type, code=code, message=message)
    assert len(calls(claude)) == 2


async def test_a_key_anthropic_refuses_is_a_502_upstream_auth_failed(serve, claude, tmp_path):
    config = providers_file(
        tmp_path,
        {
            "name": "claude",
            "vendor": "anthropic",
            "base_url": f"{claude.base_url}/v1",
            "api_key": "sk-ant-wrong",
            "models": [CLAUDE_MODEL],
        },
    )
    server = await serve(PROVIDERS_CONFIG_FILE=config, UPSTREAM_RETRIES=0)
    answer = await chat(server, await guest_token(server), CLAUDE_MODEL)
    assert_error(
        answer,
        502,
        type="upstream_error",
        code="upstream_auth_failed",
        message="Provider claude refused our credentials (401): invalid x-api-key",
    )


async def test_an_anthropic_429_is_a_429_with_its_retry_after(claude, claude_server):
    token = await guest_token(claude_server)
    for stream in BOTH:
        claude.rate_limited(retry_after=9)
        answer = await chat(claude_server, token, CLAUDE_MODEL, stream=stream)
        assert_error(
            answer,
            429,
            type="rate_limit_error",
            code="upstream_rate_limited",
            message="Provider anthropic answered 429: Number of request tokens has exceeded",
        )
        assert answer.headers["Retry-After"] == "9"


# ---------------------------------------------------------------- unreadable answers


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"{not json", "Provider vllm answered something that is not JSON."),
        (b'{"object": "chat.completion"}', "Provider vllm answered something that is not a chat completion."),
        (b'{"choices": [1]}', "Provider vllm "),
        (b'{"choices": [{"index": 0, "message": "Bonjour"}]}', "Provider vllm "),
    ],
    ids=["not-json", "no-choices", "choice-not-object", "message-not-object"],
)
async def test_an_unreadable_vllm_answer_is_a_502(vllm, vllm_server, payload, message):
    vllm.garbage(payload)
    answer = await chat(vllm_server, await guest_token(vllm_server), VLLM_MODEL)
    assert_error(answer, 502, type="upstream_error", code="invalid_upstream_response", message=message)


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"{oops", "Provider anthropic answered something that is not JSON."),
        (b'{"type": "message", "content": "Bonjour"}', "Provider anthropic answered something that is not a message."),
        (b'{"type": "message", "content": ["Bonjour"]}', "Provider anthropic "),
        (b'{"type": "message", "content": [{"type": "text"}]}', "Provider anthropic "),
    ],
    ids=["not-json", "no-content", "block-not-object", "text-block-without-text"],
)
async def test_an_unreadable_anthropic_answer_is_a_502(claude, claude_server, payload, message):
    claude.garbage(payload)
    answer = await chat(claude_server, await guest_token(claude_server), CLAUDE_MODEL)
    assert_error(answer, 502, type="upstream_error", code="invalid_upstream_response", message=message)


async def test_an_anthropic_answer_broken_off_is_a_502(claude, claude_server):
    claude.cut(2)  # not streamed: the headers and half the body, then the connection dies
    answer = await chat(claude_server, await guest_token(claude_server), CLAUDE_MODEL)
    assert_error(answer, 502, type="upstream_error", code="upstream_error", message="Provider anthropic broke off its answer: ")
    assert len(calls(claude)) == 1


async def test_the_service_still_answers_after_the_faults(vllm, oai):
    vllm.fail(500)
    vllm.garbage()
    for _ in range(2):
        with pytest.raises(openai.APIStatusError):
            await oai.chat.completions.create(model=VLLM_MODEL, messages=[{"role": "user", "content": "Salut"}])
    completion = await oai.chat.completions.create(model=VLLM_MODEL, messages=[{"role": "user", "content": "Salut"}])
    assert completion.choices[0].message.content == "Bonjour !"
    assert completion.model == "vllm/jan-v1-4b"
