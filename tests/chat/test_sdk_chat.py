"""The official OpenAI SDK against llm-api, backed by the fake vLLM and by the fake Anthropic.

The SDK is configured as a demanding user would (strict response validation, no retries, see
``sdk()`` in conftest). It creates completions plain and streamed (with and without
``stream_options.include_usage``) and lists and retrieves models. Each test checks what the SDK got
(the text the fake was told to reply, the public model id whatever id the client used, usage,
finish reasons, how chunks are framed) and what the fake provider received (model rewritten to the
provider's own id, usage always asked for upstream, Jan extensions kept back, explicit zeros kept,
explicit nulls dropped).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import openai
import pytest

USER_HELLO = [{"role": "user", "content": "Hello!"}]


@dataclass(frozen=True)
class Backend:
    """One provider behind the app, and the SDK pointed at the app."""

    name: str
    client: openai.AsyncOpenAI
    fake: Any  # FakeOpenAIUpstream or FakeAnthropic: both have reply(text, usage=...) and requests
    public_id: str  # the id llm-api shows
    upstream_id: str  # the provider's own id
    owned_by: str  # the provider's name
    model_ids: tuple[str, ...]  # every public id the provider serves, in its order

    def sent(self) -> dict[str, Any]:
        """The JSON body of the last chat request the provider received."""
        chats = [r for r in self.fake.requests if r["method"] == "POST"]
        assert chats, "the provider received no chat request"
        return chats[-1]["json"]


BACKENDS = {
    "vllm": dict(
        client="oai",
        fake="vllm",
        public_id="vllm/jan-v1-4b",
        upstream_id="jan-v1-4b",
        owned_by="vllm",
        model_ids=("vllm/jan-v1-4b",),
    ),
    "anthropic": dict(
        client="oai_claude",
        fake="claude",
        public_id="anthropic/claude-sonnet-4-5",
        upstream_id="claude-sonnet-4-5",
        owned_by="anthropic",
        model_ids=("anthropic/claude-sonnet-4-5", "anthropic/claude-haiku-4-5"),
    ),
}


@pytest.fixture(params=list(BACKENDS))
def backend(request) -> Backend:
    spec = dict(BACKENDS[request.param])
    client = request.getfixturevalue(spec.pop("client"))
    fake = request.getfixturevalue(spec.pop("fake"))
    return Backend(name=request.param, client=client, fake=fake, **spec)


def client_model(backend: Backend, form: str) -> str:
    return backend.public_id if form == "public" else backend.upstream_id


async def stream_chunks(backend: Backend, **params) -> list:
    stream = await backend.client.chat.completions.create(model=backend.public_id, messages=USER_HELLO, stream=True, **params)
    return [chunk async for chunk in stream]


def assert_one_stream(chunks: list, public_id: str) -> None:
    """Every chunk of one stream shares its id, created and model; the model is the public id."""
    assert {(c.id, c.created, c.model, c.object) for c in chunks} == {
        (chunks[0].id, chunks[0].created, public_id, "chat.completion.chunk")
    }
    assert chunks[0].id.startswith("chatcmpl-")


def streamed_text(chunks: list) -> str:
    return "".join(choice.delta.content or "" for c in chunks for choice in c.choices)


def finish_reasons(chunks: list) -> list[str]:
    return [choice.finish_reason for c in chunks for choice in c.choices if choice.finish_reason is not None]


# -- plain ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["public", "upstream"], ids=["public-id", "bare-upstream-id"])
async def test_plain_completion(backend, form):
    backend.fake.reply("Il fait beau à Paris.", usage=(17, 6))
    answer = await backend.client.chat.completions.create(model=client_model(backend, form), messages=USER_HELLO)

    assert answer.object == "chat.completion" and answer.id.startswith("chatcmpl-")
    assert answer.model == backend.public_id
    assert len(answer.choices) == 1
    choice = answer.choices[0]
    assert (choice.index, choice.finish_reason) == (0, "stop")
    assert (choice.message.role, choice.message.content, choice.message.refusal) == ("assistant", "Il fait beau à Paris.", None)
    assert not choice.message.tool_calls
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (17, 6, 23)

    sent = backend.sent()
    assert sent["model"] == backend.upstream_id
    assert not sent.get("stream")
    assert "stream_options" not in sent


# -- streamed ------------------------------------------------------------------------------------


async def test_stream_without_usage(backend):
    backend.fake.reply("Un deux trois soleil", usage=(9, 4))
    chunks = await stream_chunks(backend)

    assert_one_stream(chunks, backend.public_id)
    assert all(c.usage is None and "usage" not in c.model_fields_set for c in chunks)
    assert all(len(c.choices) == 1 for c in chunks)  # no usage-only chunk either
    assert chunks[0].choices[0].delta.role == "assistant"
    assert streamed_text(chunks) == "Un deux trois soleil"
    assert finish_reasons(chunks) == ["stop"] and chunks[-1].choices[0].finish_reason == "stop"

    sent = backend.sent()
    assert sent["model"] == backend.upstream_id and sent["stream"] is True
    if backend.name == "vllm":  # usage is always asked for upstream, to be recorded
        assert sent["stream_options"] == {"include_usage": True}


async def test_stream_with_include_usage(backend):
    backend.fake.reply("Un deux trois soleil", usage=(9, 4))
    chunks = await stream_chunks(backend, stream_options={"include_usage": True})

    assert_one_stream(chunks, backend.public_id)
    usage_chunks = [c for c in chunks if c.choices == []]
    assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1]
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (9, 4, 13)
    assert all(c.usage is None for c in chunks[:-1])
    assert streamed_text(chunks) == "Un deux trois soleil"
    assert finish_reasons(chunks) == ["stop"]


async def test_stream_with_include_usage_false(backend):
    """``include_usage: false`` is the same as not asking; vLLM is still asked for usage."""
    backend.fake.reply("Salut", usage=(3, 1))
    chunks = await stream_chunks(backend, stream_options={"include_usage": False})

    assert_one_stream(chunks, backend.public_id)
    assert all(c.usage is None and len(c.choices) == 1 for c in chunks)
    assert streamed_text(chunks) == "Salut"
    if backend.name == "vllm":
        assert backend.sent()["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("form", ["public", "upstream"], ids=["public-id", "bare-upstream-id"])
async def test_stream_model_is_public_id(backend, form):
    backend.fake.reply("Ok")
    stream = await backend.client.chat.completions.create(model=client_model(backend, form), messages=USER_HELLO, stream=True)
    chunks = [chunk async for chunk in stream]
    assert_one_stream(chunks, backend.public_id)
    assert backend.sent()["model"] == backend.upstream_id


# -- models --------------------------------------------------------------------------------------


async def test_models_list(backend):
    page = await backend.client.models.list()
    assert tuple(model.id for model in page.data) == backend.model_ids
    assert {(model.object, model.owned_by) for model in page.data} == {("model", backend.owned_by)}
    assert all(isinstance(model.created, int) and model.created > 0 for model in page.data)


async def test_models_retrieve(backend):
    """The SDK percent-encodes the slash of a public id (``vllm%2Fjan-v1-4b``)."""
    model = await backend.client.models.retrieve(backend.public_id)
    assert (model.id, model.object, model.owned_by) == (backend.public_id, "model", backend.owned_by)


async def test_models_retrieve_unknown(oai):
    with pytest.raises(openai.NotFoundError) as caught:
        await oai.models.retrieve("vllm/no-such-model")
    assert caught.value.body["param"] == "model_id" and caught.value.body["code"] == "model_not_found"


# -- what goes upstream --------------------------------------------------------------------------


async def test_jan_extensions_never_forwarded(backend):
    conversation = await backend.client.conversations.create()
    backend.fake.reply("Noted.")
    answer = await backend.client.chat.completions.create(
        model=backend.public_id,
        messages=USER_HELLO,
        store=True,
        extra_body={"conversation": conversation.id, "store_reasoning": True, "disable_prompt_modules": ["project_instruction"]},
    )
    assert answer.choices[0].message.content == "Noted."
    assert answer.model_extra["conversation"]["id"] == conversation.id  # the extension was read, not ignored

    sent = backend.sent()
    assert not {"conversation", "store", "store_reasoning", "disable_prompt_modules"} & set(sent)


async def test_explicit_zeros_forwarded_as_zeros(oai, vllm):
    await oai.chat.completions.create(
        model="vllm/jan-v1-4b",
        messages=USER_HELLO,
        temperature=0,
        top_p=0,
        presence_penalty=0,
        frequency_penalty=0,
        seed=0,
        logprobs=False,
        top_logprobs=0,
        parallel_tool_calls=False,
        extra_body={"top_k": 0},
    )
    sent = vllm.requests[-1]["json"]
    zeros = {
        "temperature": 0,
        "top_p": 0,
        "presence_penalty": 0,
        "frequency_penalty": 0,
        "seed": 0,
        "logprobs": False,
        "top_logprobs": 0,
        "parallel_tool_calls": False,
        "top_k": 0,
    }
    assert {name: sent.get(name, "absent") for name in zeros} == zeros


async def test_explicit_zero_temperature_forwarded_to_anthropic(oai_claude, claude):
    await oai_claude.chat.completions.create(
        model="anthropic/claude-sonnet-4-5", messages=USER_HELLO, temperature=0, extra_body={"top_k": 0}
    )
    sent = claude.requests[-1]["json"]
    assert (sent["temperature"], sent["top_k"]) == (0, 0)


async def test_explicit_nulls_dropped(oai, vllm):
    """The SDK sends ``None`` as ``null``, which means "not set": nothing of it goes upstream."""
    vllm.reply("Rien")
    answer = await oai.chat.completions.create(
        model="vllm/jan-v1-4b",
        messages=USER_HELLO,
        temperature=None,
        top_p=None,
        n=None,
        stop=None,
        max_tokens=None,
        max_completion_tokens=None,
        presence_penalty=None,
        seed=None,
        tools=None,
        tool_choice=None,
        stream_options=None,
        extra_body={"top_k": None, "conversation": None},
    )
    assert answer.choices[0].message.content == "Rien"
    assert vllm.requests[-1]["json"] == {"model": "jan-v1-4b", "messages": USER_HELLO, "stream": False}
