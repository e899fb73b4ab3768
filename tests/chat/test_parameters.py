"""Parameter handling of POST /v1/chat/completions: validation, per-provider refusals, translation.

* Every OpenAI parameter is validated as the contract says: a bad one is a 400 with the OpenAI error
  envelope naming it, and nothing reaches the provider.
* A parameter the provider cannot honour is a 400 naming it (``top_k`` / ``repetition_penalty`` with
  OpenAI; ``n`` > 1, logprobs, ``seed``, JSON response formats, a temperature above 1... with
  Anthropic); ``top_k`` and ``repetition_penalty`` are forwarded to vLLM.
* The Anthropic adapter's translation, checked on what the fake Anthropic received and on what the
  SDK got back: system prompt, merged turns, images, stop sequences, token limits, tools and tool
  choice, tool calls both ways (plain and streamed), stop reasons, headers.
* Tool calls through vLLM, plain and streamed.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import openai
import pytest

from tests.chat.conftest import ANTHROPIC_KEY, guest_token
from tests.fakes.loopback import running
from tests.fakes.openai_upstream import FakeOpenAIUpstream

CLAUDE = "anthropic/claude-sonnet-4-5"
JAN = "vllm/jan-v1-4b"
HELLO = [{"role": "user", "content": "Hello!"}]
# A 1x1 PNG, as the fake Anthropic checks that image bytes match their media type.
PNG_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "description": "A city name"}},
    "required": ["city"],
    "additionalProperties": False,
}
WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Current weather for a city.", "parameters": WEATHER_SCHEMA},
}


async def post_chat(server, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST the body as JSON with a fresh guest token; the status and the JSON answer."""
    token = await guest_token(server)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            str(server.make_url("/v1/chat/completions")),
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        return response.status, await response.json()


def chat_requests(fake) -> list[dict[str, Any]]:
    """The bodies of the chat requests a fake provider received (model listings left out)."""
    return [r["json"] for r in fake.requests if r["method"] == "POST"]


def assert_refused(status: int, answer: dict[str, Any], param: str, code: str) -> str:
    """A 400 in the OpenAI envelope naming ``param``; returns the message."""
    assert status == 400, answer
    assert set(answer) == {"error"} and set(answer["error"]) == {"message", "type", "param", "code"}
    error = answer["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert param.split(".")[0].split("[")[0] in error["message"]
    return error["message"]


def streamed_tool_calls(chunks: list) -> dict[int, dict[str, str]]:
    """Tool-call deltas of a stream, reassembled by index: ``{index: {"id", "name", "arguments"}}``."""
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                call["id"] = delta.id or call["id"]
                if delta.function is not None:
                    call["name"] = delta.function.name or call["name"]
                    call["arguments"] += delta.function.arguments or ""
    return calls


def finish_reasons(chunks: list) -> list[str]:
    return [choice.finish_reason for c in chunks for choice in c.choices if choice.finish_reason is not None]


# -- validation against the contract -------------------------------------------------------------

INVALID = [
    ({"temperature": 3}, "temperature", "invalid_value"),
    ({"temperature": "0.7"}, "temperature", "invalid_value"),  # strict: a string is not a number
    ({"top_p": 1.5}, "top_p", "invalid_value"),
    ({"n": 0}, "n", "invalid_value"),
    ({"n": 129}, "n", "invalid_value"),
    ({"presence_penalty": -3}, "presence_penalty", "invalid_value"),
    ({"frequency_penalty": 2.5}, "frequency_penalty", "invalid_value"),
    ({"top_logprobs": 21}, "top_logprobs", "invalid_value"),
    ({"max_tokens": 0}, "max_tokens", "invalid_value"),
    ({"max_completion_tokens": 0}, "max_completion_tokens", "invalid_value"),
    ({"stop": ""}, "stop", "invalid_value"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "invalid_value"),
    ({"logit_bias": {"abc": 1}}, "logit_bias.abc", "invalid_value"),
    ({"tool_choice": "sometimes"}, "tool_choice", "invalid_value"),
    ({"response_format": {"type": "xml"}}, "response_format.type", "invalid_value"),
    ({"stream": True, "stream_options": {"include_usage": True, "x": 1}}, "stream_options.x", "unknown_parameter"),
    ({"foo": 1}, "foo", "unknown_parameter"),
    ({"messages": []}, "messages", "invalid_value"),
    ({"messages": None}, "messages", "invalid_value"),
    ({"messages": [{"role": "wizard", "content": "Hi"}]}, "messages[0].role", "invalid_value"),
    ({"messages": [{"role": "user"}]}, "messages[0].content", "missing_required_parameter"),
    ({"messages": [{"role": "user", "content": "Hi", "mood": "sunny"}]}, "messages[0].mood", "unknown_parameter"),
]


@pytest.mark.parametrize(("change", "param", "code"), INVALID, ids=[case[1] + "-" + json.dumps(case[0]) for case in INVALID])
async def test_invalid_parameter_is_refused(vllm_server, vllm, change, param, code):
    status, answer = await post_chat(vllm_server, {"model": "jan-v1-4b", "messages": HELLO, **change})
    assert_refused(status, answer, param, code)
    assert chat_requests(vllm) == []


async def test_missing_messages(vllm_server, vllm):
    status, answer = await post_chat(vllm_server, {"model": "jan-v1-4b"})
    assert_refused(status, answer, "messages", "missing_required_parameter")
    assert chat_requests(vllm) == []


async def test_sdk_sees_the_envelope(oai, vllm):
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.chat.completions.create(model=JAN, messages=HELLO, temperature=3)
    assert (caught.value.status_code, caught.value.param, caught.value.code) == (400, "temperature", "invalid_value")
    assert chat_requests(vllm) == []


# -- parameters a provider cannot honour ---------------------------------------------------------


@pytest.fixture
async def openai_fake() -> FakeOpenAIUpstream:
    async with running(FakeOpenAIUpstream(flavour="openai", models=("gpt-4o-mini",), api_key="sk-x")) as fake:
        yield fake


@pytest.fixture
async def openai_server(serve, openai_fake):
    """The app with one provider: the fake OpenAI, declared by OPENAI_API_KEY / OPENAI_BASE_URL."""
    return await serve(OPENAI_API_KEY="sk-x", OPENAI_BASE_URL=f"{openai_fake.base_url}/v1", UPSTREAM_RETRIES=0)


@pytest.mark.parametrize(("parameter", "value"), [("top_k", 40), ("repetition_penalty", 1.1)])
async def test_openai_refuses_sampling_extensions(openai_server, openai_fake, parameter, value):
    status, answer = await post_chat(openai_server, {"model": "gpt-4o-mini", "messages": HELLO, parameter: value})
    message = assert_refused(status, answer, parameter, "unsupported_parameter")
    assert "openai" in message
    assert chat_requests(openai_fake) == []


async def test_openai_serves_without_them(openai_server, openai_fake):
    """The same provider answers a request without them; an explicit null ``top_k`` means "not set"."""
    openai_fake.reply("Hi from OpenAI", usage=(5, 4))
    status, answer = await post_chat(openai_server, {"model": "gpt-4o-mini", "messages": HELLO, "top_k": None, "temperature": 0})
    assert status == 200, answer
    assert (answer["model"], answer["choices"][0]["message"]["content"]) == ("openai/gpt-4o-mini", "Hi from OpenAI")
    assert chat_requests(openai_fake) == [{"model": "gpt-4o-mini", "messages": HELLO, "temperature": 0, "stream": False}]
    assert openai_fake.requests[-1]["headers"]["authorization"] == "Bearer sk-x"


async def test_vllm_gets_what_it_supports(oai, vllm):
    """vLLM takes the sampling extensions and OpenAI's own parameters: all go upstream as sent."""
    vllm.reply("Deux fois.")
    answer = await oai.chat.completions.create(
        model=JAN,
        messages=HELLO,
        n=2,
        seed=7,
        stop=["\n\n", "END"],
        logit_bias={"50256": -100},
        response_format={"type": "json_object"},
        max_completion_tokens=64,
        extra_body={"top_k": 40, "repetition_penalty": 1.1},
    )
    assert [(c.index, c.message.content) for c in answer.choices] == [(0, "Deux fois."), (1, "Deux fois.")]
    sent = chat_requests(vllm)[-1]
    assert {
        name: sent[name]
        for name in ("top_k", "repetition_penalty", "n", "seed", "stop", "logit_bias", "response_format", "max_completion_tokens")
    } == {
        "top_k": 40,
        "repetition_penalty": 1.1,
        "n": 2,
        "seed": 7,
        "stop": ["\n\n", "END"],
        "logit_bias": {"50256": -100},
        "response_format": {"type": "json_object"},
        "max_completion_tokens": 64,
    }


async def test_whole_numbers_written_as_floats_reach_the_provider_as_integers(vllm_server, vllm):
    """JSON Schema's integers include 2.0, so the contract accepts it; a provider that parses integers
    strictly (Go's encoding/json, as in Ollama) would refuse it, so it is forwarded as 2."""
    vllm.reply("Deux fois.")
    status, answer = await post_chat(
        vllm_server, {"model": JAN, "messages": HELLO, "n": 2.0, "seed": 7.0, "max_completion_tokens": 64.0, "temperature": 1.0}
    )
    assert status == 200, answer
    assert len(answer["choices"]) == 2
    sent = chat_requests(vllm)[-1]
    assert [(sent[name], type(sent[name])) for name in ("n", "seed", "max_completion_tokens", "temperature")] == [
        (2, int),
        (7, int),
        (64, int),
        (1.0, float),
    ]  # a number field keeps what the client wrote


ANTHROPIC_REFUSES = [
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"seed": 42}, "seed"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    (
        {"response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": WEATHER_SCHEMA}}},
        "response_format",
    ),
    ({"temperature": 1.5}, "temperature"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"frequency_penalty": -1}, "frequency_penalty"),
    ({"logit_bias": {"50256": -100}}, "logit_bias"),
    ({"repetition_penalty": 1.1}, "repetition_penalty"),
]


@pytest.mark.parametrize(("change", "param"), ANTHROPIC_REFUSES, ids=[json.dumps(case[0]) for case in ANTHROPIC_REFUSES])
async def test_anthropic_refuses_what_it_cannot_honour(claude_server, claude, change, param):
    status, answer = await post_chat(claude_server, {"model": CLAUDE, "messages": HELLO, **change})
    message = assert_refused(status, answer, param, "unsupported_parameter")
    assert "anthropic" in message
    assert chat_requests(claude) == []


async def test_anthropic_accepts_values_that_ask_for_nothing(oai_claude, claude):
    """One choice, no logprobs, plain text, zero penalties and temperature 1 are what Anthropic does anyway."""
    claude.reply("Fine.")
    answer = await oai_claude.chat.completions.create(
        model=CLAUDE,
        messages=HELLO,
        n=1,
        logprobs=False,
        response_format={"type": "text"},
        presence_penalty=0,
        frequency_penalty=0,
        temperature=1,
    )
    assert answer.choices[0].message.content == "Fine."
    sent = chat_requests(claude)[-1]
    assert sent["temperature"] == 1
    assert not {"n", "logprobs", "response_format", "presence_penalty", "frequency_penalty"} & set(sent)


async def test_anthropic_refuses_seed_zero(claude_server, claude):
    """``seed: 0`` is a seed like any other ("explicit zeros are kept"), and Anthropic cannot honour it."""
    status, answer = await post_chat(claude_server, {"model": CLAUDE, "messages": HELLO, "seed": 0})
    assert_refused(status, answer, "seed", "unsupported_parameter")
    assert chat_requests(claude) == []


# -- Anthropic translation -----------------------------------------------------------------------


async def test_anthropic_request_shape_and_headers(oai_claude, claude):
    claude.reply("Bonjour, Ada.", usage=(30, 5))
    answer = await oai_claude.chat.completions.create(model=CLAUDE, messages=HELLO, user="ada-42")

    assert (answer.model, answer.choices[0].message.content, answer.choices[0].finish_reason) == (CLAUDE, "Bonjour, Ada.", "stop")
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (30, 5, 35)
    request = claude.requests[-1]
    assert (request["method"], request["path"]) == ("POST", "/v1/messages")
    assert request["headers"]["x-api-key"] == ANTHROPIC_KEY
    assert request["headers"]["anthropic-version"] == "2023-06-01"
    assert request["json"] == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello!"}]}],
        "metadata": {"user_id": "ada-42"},
    }


async def test_system_and_developer_messages_become_system(oai_claude, claude):
    await oai_claude.chat.completions.create(
        model=CLAUDE,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "How are you?"},
        ],
    )
    sent = chat_requests(claude)[-1]
    assert sent["system"] == [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Answer in French."}]
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello."}]},
        {"role": "user", "content": [{"type": "text", "text": "How are you?"}]},
    ]


async def test_empty_system_message_is_left_out(oai_claude, claude):
    """An empty system prompt (the contract allows ``""``) asks for nothing; Anthropic refuses empty text
    blocks, so it must not be sent as one."""
    claude.reply("Hi.")
    answer = await oai_claude.chat.completions.create(model=CLAUDE, messages=[{"role": "system", "content": ""}, *HELLO])
    assert answer.choices[0].message.content == "Hi."
    assert "system" not in chat_requests(claude)[-1]


async def test_consecutive_same_role_messages_are_merged(oai_claude, claude):
    claude.reply("Merged.")
    answer = await oai_claude.chat.completions.create(
        model=CLAUDE,
        messages=[
            {"role": "user", "content": "First."},
            {"role": "user", "content": [{"type": "text", "text": "Second."}]},
            {"role": "assistant", "content": "Third."},
            {"role": "assistant", "content": [{"type": "text", "text": "Fourth."}]},
            {"role": "user", "content": "Fifth."},
        ],
    )
    assert answer.choices[0].message.content == "Merged."
    assert chat_requests(claude)[-1]["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "First."}, {"type": "text", "text": "Second."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Third."}, {"type": "text", "text": "Fourth."}]},
        {"role": "user", "content": [{"type": "text", "text": "Fifth."}]},
    ]


async def test_images_become_image_blocks(oai_claude, claude):
    claude.reply("Two cats.")
    answer = await oai_claude.chat.completions.create(
        model=CLAUDE,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these pictures?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_BASE64}"}},
                ],
            }
        ],
    )
    assert answer.choices[0].message.content == "Two cats."
    assert chat_requests(claude)[-1]["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these pictures?"},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_BASE64}},
            ],
        }
    ]


@pytest.mark.parametrize(("stop", "sequences"), [("END", ["END"]), (["END", "STOP"], ["END", "STOP"])], ids=["string", "list"])
async def test_stop_becomes_stop_sequences(oai_claude, claude, stop, sequences):
    claude.reply("Counting one two END three")
    answer = await oai_claude.chat.completions.create(model=CLAUDE, messages=HELLO, stop=stop)
    sent = chat_requests(claude)[-1]
    assert sent["stop_sequences"] == sequences and "stop" not in sent
    # The fake stops at the sequence, as Anthropic does; the stop text is not returned.
    assert (answer.choices[0].message.content, answer.choices[0].finish_reason) == ("Counting one two ", "stop")


@pytest.mark.parametrize(
    ("limits", "max_tokens"),
    [
        ({}, 4096),
        ({"max_tokens": 50}, 50),
        ({"max_completion_tokens": 60}, 60),
        ({"max_tokens": 50, "max_completion_tokens": 60}, 60),
    ],
    ids=["default", "max_tokens", "max_completion_tokens", "both"],
)
async def test_max_tokens_mapping(oai_claude, claude, limits, max_tokens):
    await oai_claude.chat.completions.create(model=CLAUDE, messages=HELLO, **limits)
    sent = chat_requests(claude)[-1]
    assert sent["max_tokens"] == max_tokens and "max_completion_tokens" not in sent


async def test_top_k_minus_one_means_no_top_k(oai_claude, claude):
    """The contract documents ``top_k: -1`` as "disabled"; Anthropic accepts only top_k >= 0, so the
    adapter must leave it out rather than forward it."""
    claude.reply("Sampled.")
    answer = await oai_claude.chat.completions.create(model=CLAUDE, messages=HELLO, extra_body={"top_k": -1})
    assert answer.choices[0].message.content == "Sampled."
    assert "top_k" not in chat_requests(claude)[-1]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({}, None),
        ({"tool_choice": "auto"}, {"type": "auto"}),
        ({"tool_choice": "required"}, {"type": "any"}),
        ({"tool_choice": "none"}, {"type": "none"}),
        ({"tool_choice": {"type": "function", "function": {"name": "get_weather"}}}, {"type": "tool", "name": "get_weather"}),
        ({"tool_choice": "auto", "parallel_tool_calls": False}, {"type": "auto", "disable_parallel_tool_use": True}),
        ({"tool_choice": "required", "parallel_tool_calls": False}, {"type": "any", "disable_parallel_tool_use": True}),
    ],
    ids=["absent", "auto", "required", "none", "named", "auto-sequential", "required-sequential"],
)
async def test_tools_and_tool_choice_translated(oai_claude, claude, choice, expected):
    bare_tool = {"type": "function", "function": {"name": "get_time"}}
    await oai_claude.chat.completions.create(model=CLAUDE, messages=HELLO, tools=[WEATHER_TOOL, bare_tool], **choice)
    sent = chat_requests(claude)[-1]
    weather, clock = sent["tools"]
    assert weather == {"name": "get_weather", "description": "Current weather for a city.", "input_schema": WEATHER_SCHEMA}
    assert (clock["name"], clock["input_schema"]) == ("get_time", {"type": "object", "properties": {}})
    assert sent.get("tool_choice") == expected
    assert "parallel_tool_calls" not in sent


async def test_anthropic_tool_use_answer(oai_claude, claude):
    claude.reply(
        "Let me check.", tool_use=[{"id": "toolu_01Paris", "name": "get_weather", "input": {"city": "Paris"}}], usage=(40, 12)
    )
    answer = await oai_claude.chat.completions.create(model=CLAUDE, messages=HELLO, tools=[WEATHER_TOOL])

    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    [call] = choice.message.tool_calls
    assert (call.id, call.type, call.function.name) == ("toolu_01Paris", "function", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (40, 12)


async def test_anthropic_tool_use_streamed(oai_claude, claude):
    arguments = {"city": "Saint-Rémy-de-Provence", "units": "metric", "days": [1, 2, 3]}
    claude.reply(
        "Checking.",
        tool_use=[
            {"id": "toolu_01First", "name": "get_weather", "input": arguments},
            {"id": "toolu_01Second", "name": "get_time", "input": {}},
        ],
    )
    stream = await oai_claude.chat.completions.create(model=CLAUDE, messages=HELLO, tools=[WEATHER_TOOL], stream=True)
    chunks = [chunk async for chunk in stream]

    assert {(c.id, c.model) for c in chunks} == {(chunks[0].id, CLAUDE)}
    assert "".join(ch.delta.content or "" for c in chunks for ch in c.choices) == "Checking."
    calls = streamed_tool_calls(chunks)
    assert sorted(calls) == [0, 1]
    assert (calls[0]["id"], calls[0]["name"], json.loads(calls[0]["arguments"])) == ("toolu_01First", "get_weather", arguments)
    assert (calls[1]["id"], calls[1]["name"], json.loads(calls[1]["arguments"])) == ("toolu_01Second", "get_time", {})
    fragments = [d for c in chunks for ch in c.choices for d in ch.delta.tool_calls or [] if d.index == 0]
    assert len(fragments) > 3  # the arguments did arrive in pieces
    assert finish_reasons(chunks) == ["tool_calls"]


async def test_tool_calls_in_history_become_tool_use_and_tool_result(oai_claude, claude):
    claude.reply("Paris: 18°C, Rome: 22°C.")
    answer = await oai_claude.chat.completions.create(
        model=CLAUDE,
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "system", "content": "You are a weather bot."},
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {
                        "id": "call_paris",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {"id": "call_rome", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_paris", "content": "18°C, sunny"},
            {"role": "tool", "tool_call_id": "call_rome", "content": [{"type": "text", "text": "22°C, cloudy"}]},
        ],
    )
    assert (answer.choices[0].message.content, answer.choices[0].finish_reason) == ("Paris: 18°C, Rome: 22°C.", "stop")
    sent = chat_requests(claude)[-1]
    assert sent["system"] == [{"type": "text", "text": "You are a weather bot."}]
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "call_paris", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_rome", "name": "get_weather", "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_paris", "content": "18°C, sunny"},
                {"type": "tool_result", "tool_use_id": "call_rome", "content": "22°C, cloudy"},
            ],
        },
    ]


async def test_max_tokens_stop_is_length(oai_claude, claude):
    claude.reply("one two three four five")
    answer = await oai_claude.chat.completions.create(model=CLAUDE, messages=HELLO, max_tokens=2)
    assert (answer.choices[0].message.content, answer.choices[0].finish_reason) == ("one two", "length")
    assert answer.usage.completion_tokens == 2


async def test_max_tokens_stop_is_length_streamed(oai_claude, claude):
    claude.reply("one two three four five")
    stream = await oai_claude.chat.completions.create(
        model=CLAUDE, messages=HELLO, max_completion_tokens=3, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert "".join(ch.delta.content or "" for c in chunks for ch in c.choices) == "one two three"
    assert finish_reasons(chunks) == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3


# -- tool calls through vLLM ---------------------------------------------------------------------


async def test_vllm_tool_call(oai, vllm):
    vllm.reply(tool_calls=[{"id": "chatcmpl-tool-1", "name": "get_weather", "arguments": {"city": "Paris"}}])
    tool_choice = {"type": "function", "function": {"name": "get_weather"}}
    answer = await oai.chat.completions.create(model=JAN, messages=HELLO, tools=[WEATHER_TOOL], tool_choice=tool_choice)

    choice = answer.choices[0]
    assert (choice.finish_reason, choice.message.content) == ("tool_calls", None)
    [call] = choice.message.tool_calls
    assert (call.id, call.type, call.function.name) == ("chatcmpl-tool-1", "function", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    sent = chat_requests(vllm)[-1]
    assert (sent["tools"], sent["tool_choice"]) == ([WEATHER_TOOL], tool_choice)  # forwarded as sent


async def test_vllm_tool_call_streamed(oai, vllm):
    arguments = {"city": "Saint-Rémy-de-Provence", "units": "metric"}
    vllm.reply(
        tool_calls=[
            {"id": "chatcmpl-tool-1", "name": "get_weather", "arguments": arguments},
            {"id": "chatcmpl-tool-2", "name": "get_weather", "arguments": {"city": "Rome"}},
        ]
    )
    stream = await oai.chat.completions.create(model=JAN, messages=HELLO, tools=[WEATHER_TOOL], stream=True)
    chunks = [chunk async for chunk in stream]

    assert {(c.id, c.model) for c in chunks} == {(chunks[0].id, JAN)}
    calls = streamed_tool_calls(chunks)
    assert calls == {
        0: {"id": "chatcmpl-tool-1", "name": "get_weather", "arguments": calls[0]["arguments"]},
        1: {"id": "chatcmpl-tool-2", "name": "get_weather", "arguments": calls[1]["arguments"]},
    }
    assert json.loads(calls[0]["arguments"]) == arguments and json.loads(calls[1]["arguments"]) == {"city": "Rome"}
    assert finish_reasons(chunks) == ["tool_calls"]
    assert chat_requests(vllm)[-1]["tools"] == [WEATHER_TOOL]


async def test_vllm_tool_history_forwarded_as_sent(oai, vllm):
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_paris", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_paris", "content": "18°C, sunny"},
    ]
    vllm.reply("It is 18°C and sunny in Paris.")
    answer = await oai.chat.completions.create(model=JAN, messages=history, tools=[WEATHER_TOOL])
    assert answer.choices[0].message.content == "It is 18°C and sunny in Paris."
    # The explicit null content of the assistant turn is the client's own JSON, kept inside messages.
    assert chat_requests(vllm)[-1]["messages"] == history
