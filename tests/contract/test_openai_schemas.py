"""Our answers checked against OpenAI's own schemas (openai_schemas.json, copied from openai/openai-openapi
by scripts/openai_schemas.py; its ``$comment`` names the file and commit).

openapi.yaml is our own contract, and strict mode checks every response against it; these tests check
that what we answer is also what OpenAI documents, where the two could drift apart: fields OpenAI does
not allow to be null (a provider's ``"system_fingerprint": null``), fields OpenAI requires (the
``logprobs`` of an ``output_text`` part). The real app is driven over HTTP in front of the fake vLLM and
the fake Anthropic: plain and streamed chat completions, items created by clients, items stored after a
chat (and items stored before ``logprobs`` was), and conversation objects. Extra fields of ours (a
conversation's ``title``, an item's ``created_at``...) are allowed: OpenAI's schemas do not forbid them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from llm_api.app_keys import SETTINGS
from tests.api.callers import Caller
from tests.chat.conftest import claude, claude_server, guest_caller, serve, vllm, vllm_server  # noqa: F401 (fixtures)
from tests.sql import query
from tests.sse import data_events

SCHEMAS = json.loads((Path(__file__).parent / "openai_schemas.json").read_text())
HELLO = [{"role": "user", "content": "Hello!"}]
MODELS = {"vllm": "vllm/jan-v1-4b", "anthropic": "anthropic/claude-sonnet-4-5"}
WEATHER_TOOL = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


def openai_errors(value: Any, schema: str) -> list[str]:
    """Where ``value`` breaks OpenAI's ``schema``, one line per error."""
    validator = Draft202012Validator({**SCHEMAS, "$ref": f"#/$defs/{schema}"})
    return sorted(f"{error.json_path}: {error.message}" for top in validator.iter_errors(value) for error in _leaves(top))


def _leaves(error: ValidationError) -> list[ValidationError]:
    """The errors under a failed ``oneOf``/``anyOf`` in the branches meant for the value: those whose
    ``type`` matched (OpenAI's unions are tagged by ``type``); the error itself when none did."""
    branches: dict[Any, list[ValidationError]] = {}
    for inner in error.context:
        branches.setdefault(inner.relative_schema_path[0], []).append(inner)
    meant = [inner for errors in branches.values() if not any(_wrong_tag(inner, error) for inner in errors) for inner in errors]
    return [leaf for inner in meant for leaf in _leaves(inner)] or [error]


def _wrong_tag(inner: ValidationError, union: ValidationError) -> bool:
    return inner.validator in ("enum", "const") and list(inner.absolute_path) == [*union.absolute_path, "type"]


def assert_openai(value: Any, schema: str) -> None:
    errors = openai_errors(value, schema)
    assert not errors, f"not an OpenAI {schema}: " + "; ".join(errors) + "\n" + json.dumps(value, indent=1)


# -- the copied schemas themselves -----------------------------------------------------------------


def test_copied_schemas_are_a_valid_json_schema_naming_their_source():
    Draft202012Validator.check_schema(SCHEMAS)
    source = SCHEMAS["source"]
    assert source["repository"] == "openai/openai-openapi" and len(source["commit"]) == 40
    assert source["commit"] in SCHEMAS["$comment"]
    refs = set(_references(SCHEMAS["$defs"]))
    assert refs <= {f"#/$defs/{name}" for name in SCHEMAS["$defs"]}  # every $ref resolves inside the file


def test_copied_schemas_say_what_openai_says():
    """Spot checks of the facts these tests rely on, so that a careless refresh of the copy is seen."""
    output_text = SCHEMAS["$defs"]["OutputTextContent"]
    assert set(output_text["required"]) == {"type", "text", "annotations", "logprobs"}
    assert openai_errors({"type": "output_text", "text": "x", "annotations": []}, "OutputTextContent") == [
        "$: 'logprobs' is a required property"
    ]
    assert "$.system_fingerprint: None is not of type 'string'" in openai_errors(
        {"system_fingerprint": None}, "CreateChatCompletionResponse"
    )
    assert "$.prompt_tokens_details: None is not of type 'object'" in openai_errors(
        {"prompt_tokens_details": None}, "CompletionUsage"
    )
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "usage": None,
        "choices": [{"index": 0, "delta": {}, "finish_reason": None, "logprobs": None}],
    }
    assert_openai(chunk, "CreateChatCompletionStreamResponse")  # nullable: true, read as OpenAI means it


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _references(value)]
    return []


# -- chat completions ------------------------------------------------------------------------------


@pytest.fixture(params=list(MODELS))
def provider(request) -> tuple[str, Any, Any]:
    """(public model id, the fake provider, the app in front of it)."""
    name = request.param
    fake = request.getfixturevalue("vllm" if name == "vllm" else "claude")
    server = request.getfixturevalue("vllm_server" if name == "vllm" else "claude_server")
    return MODELS[name], fake, server


@pytest.fixture
async def http(provider) -> aiohttp.ClientSession:
    async with aiohttp.ClientSession(base_url=str(provider[2].make_url("/"))) as session:
        yield session


@pytest.fixture
async def me(http) -> Caller:
    return await guest_caller(http)


async def chat(me: Caller, **body) -> dict:
    return await me.call("POST", "/v1/chat/completions", json=body)


async def streamed(me: Caller, **body) -> list:
    async with me.client.post("/v1/chat/completions", json={**body, "stream": True}, headers=me.headers) as response:
        assert response.status == 200, await response.text()
        events = await data_events(response)
    assert events[-1] == "[DONE]"
    return events[:-1]


async def test_plain_answer(provider, me):
    """Through vLLM, whose answer carries ``"system_fingerprint": null``, ``"service_tier": null`` and
    ``"usage": {..., "prompt_tokens_details": null}``, and through Anthropic."""
    model, fake, _ = provider
    fake.reply("Il fait beau.", usage=(17, 6))
    answer = await chat(me, model=model, messages=HELLO)
    assert answer["choices"][0]["message"]["content"] == "Il fait beau."
    assert_openai(answer, "CreateChatCompletionResponse")


async def test_plain_answer_with_tool_calls(provider, me):
    model, fake, _ = provider
    if model.startswith("vllm/"):
        fake.reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Lyon"}}])
    else:
        fake.reply("Let me look.", tool_use=[{"name": "get_weather", "input": {"city": "Lyon"}}])
    answer = await chat(me, model=model, messages=HELLO, tools=WEATHER_TOOL)
    assert answer["choices"][0]["finish_reason"] == "tool_calls"
    assert_openai(answer, "CreateChatCompletionResponse")


async def test_plain_answer_stored_in_a_conversation(provider, me):
    """With the ``conversation`` extension the answer also names the conversation (an extra field)."""
    model, fake, _ = provider
    conversation = await me.conversation()
    fake.reply("Noté.")
    answer = await chat(me, model=model, messages=HELLO, conversation=conversation["id"])
    assert answer["conversation"]["id"] == conversation["id"]
    assert_openai(answer, "CreateChatCompletionResponse")


@pytest.mark.parametrize(
    "options", [None, {"include_usage": True}, {"include_usage": False}], ids=["no-options", "include-usage", "no-usage"]
)
async def test_streamed_chunks(provider, me, options):
    model, fake, _ = provider
    fake.reply("Un deux trois soleil", usage=(9, 4))
    chunks = await streamed(me, model=model, messages=HELLO, **({"stream_options": options} if options else {}))
    assert (
        "".join(choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"]) == "Un deux trois soleil"
    )
    assert any(chunk.get("usage") for chunk in chunks) == bool(options and options["include_usage"])
    for chunk in chunks:
        assert_openai(chunk, "CreateChatCompletionStreamResponse")


async def test_streamed_chunks_with_tool_calls_into_a_conversation(provider, me):
    """Tool call fragments, and the ``choices: []`` chunk naming the conversation before ``[DONE]``."""
    model, fake, _ = provider
    conversation = await me.conversation()
    if model.startswith("vllm/"):
        fake.reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Lyon"}}])
    else:
        fake.reply("Let me look.", tool_use=[{"name": "get_weather", "input": {"city": "Lyon"}}])
    chunks = await streamed(
        me,
        model=model,
        messages=HELLO,
        tools=WEATHER_TOOL,
        conversation=conversation["id"],
        stream_options={"include_usage": True},
    )
    assert chunks[-1]["choices"] == [] and chunks[-1]["conversation"]["id"] == conversation["id"]
    assert any(choice["delta"].get("tool_calls") for chunk in chunks for choice in chunk["choices"])
    for chunk in chunks:
        assert_openai(chunk, "CreateChatCompletionStreamResponse")


# -- conversations and items -----------------------------------------------------------------------

CLIENT_ITEMS = [
    {"role": "user", "content": "A plain string."},
    {
        "type": "message",
        "role": "user",
        "content": [
            {"type": "input_text", "text": "Look at this."},
            {"type": "input_image", "image_url": "https://example.com/cat.png"},
            {"type": "input_file", "file_id": "file_abc123"},
            {"type": "input_file", "file_url": "https://example.com/report.pdf", "filename": "report.pdf"},
        ],
    },
    {"type": "message", "role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
    {
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [
            {"type": "output_text", "text": "Without logprobs, as clients send it.", "annotations": []},
            {"type": "output_text", "text": "Without annotations either."},
            {"type": "refusal", "refusal": "Not that."},
        ],
    },
    {"role": "assistant", "content": "A plain string from the assistant."},
    {"type": "message", "role": "assistant", "content": [{"type": "text", "text": {"text": "Jan's nested text."}}]},
    {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Lyon"}'},
    {"type": "function_call_output", "call_id": "call_1", "output": "18°C"},
]


async def assert_items_openai(me: Caller, conversation_id: str, count: int) -> list[dict]:
    """The conversation's items, each listed and retrieved as OpenAI shapes them."""
    page = await me.items(conversation_id, order="asc")
    assert len(page["data"]) == count
    assert_openai(page, "ConversationItemList")
    for item in page["data"]:
        assert_openai(await me.call("GET", f"/v1/conversations/{conversation_id}/items/{item['id']}"), "ConversationItem")
    return page["data"]


def output_texts(items: list[dict]) -> list[dict]:
    return [part for item in items if item["type"] == "message" for part in item["content"] if part["type"] == "output_text"]


@pytest.mark.parametrize("provider", ["vllm"], indirect=True)
async def test_items_created_by_clients(me):
    conversation = await me.conversation()
    created = await me.call("POST", f"/v1/conversations/{conversation['id']}/items", json={"items": CLIENT_ITEMS})
    assert_openai(created, "ConversationItemList")
    items = await assert_items_openai(me, conversation["id"], len(CLIENT_ITEMS))
    assert [part["logprobs"] for part in output_texts(items)] == [[]] * 4


@pytest.mark.parametrize("provider", ["vllm"], indirect=True)
async def test_items_echoed_back_whole(me):
    """An item as OpenAI (or this service) returned it, ``logprobs`` included, can be given back."""
    logprob = {
        "token": "Oui",
        "logprob": -0.25,
        "bytes": [79, 117, 105],
        "top_logprobs": [{"token": "Oui", "logprob": -0.25, "bytes": [79, 117, 105]}],
    }
    conversation = await me.conversation()
    echoed = {
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [
            {"type": "output_text", "text": "Echoed back.", "annotations": [], "logprobs": []},
            {"type": "output_text", "text": "Oui", "annotations": [], "logprobs": [logprob]},
        ],
    }
    created = await me.call("POST", f"/v1/conversations/{conversation['id']}/items", json={"items": [echoed]})
    assert_openai(created, "ConversationItemList")
    items = await assert_items_openai(me, conversation["id"], 1)
    assert [part["logprobs"] for part in output_texts(items)] == [[], [logprob]]
    again = await me.call(
        "POST",
        f"/v1/conversations/{conversation['id']}/items",
        json={"items": [{key: items[0][key] for key in ("type", "role", "status", "content")}]},
    )
    assert again["data"][0]["content"] == items[0]["content"]


@pytest.mark.parametrize("provider", ["vllm"], indirect=True)
async def test_items_given_when_a_conversation_is_created(me):
    conversation = await me.conversation(items=CLIENT_ITEMS[:5], metadata={"topic": "weather"})
    assert_openai(conversation, "ConversationResource")
    await assert_items_openai(me, conversation["id"], 5)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_items_stored_after_a_chat(provider, me, stream):
    """The user's message, the answer (with its reasoning, kept when asked) and its tool call."""
    model, fake, _ = provider
    conversation = await me.conversation()
    if model.startswith("vllm/"):
        fake.reply(
            "Voyons.",
            reasoning="The user wants the weather.",
            tool_calls=[{"name": "get_weather", "arguments": {"city": "Lyon"}}],
        )
    else:
        fake.reply("Voyons.", tool_use=[{"name": "get_weather", "input": {"city": "Lyon"}}])
    body = {"model": model, "messages": HELLO, "tools": WEATHER_TOOL, "conversation": conversation["id"], "store_reasoning": True}
    await (streamed(me, **body) if stream else chat(me, **body))
    items = await assert_items_openai(me, conversation["id"], 3)
    assert [item["type"] for item in items] == ["message", "message", "function_call"]
    assert [(part["text"], part["logprobs"]) for part in output_texts(items)] == [("Voyons.", [])]


@pytest.mark.parametrize("provider", ["vllm"], indirect=True)
async def test_items_stored_after_a_chat_with_files(provider, me):
    """File and audio parts of the chat's last message are stored as ``input_file`` parts."""
    conversation = await me.conversation()
    message = {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in these?"},
            {"type": "file", "file": {"file_id": "file_abc123"}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        ],
    }
    await chat(me, model=MODELS["vllm"], messages=[message], conversation=conversation["id"])
    items = await assert_items_openai(me, conversation["id"], 2)
    assert [part["type"] for part in items[0]["content"]] == ["input_text", "input_file", "input_file", "input_file"]


@pytest.mark.parametrize("provider", ["vllm"], indirect=True)
async def test_items_stored_by_earlier_versions(provider, me):
    """Rows written before this fix: ``output_text`` parts without ``logprobs`` (shown with ``[]``), and
    ``input_file`` parts with a null for each field not given (shown without them)."""
    _, fake, server = provider
    conversation = await me.conversation(items=CLIENT_ITEMS[1:2] + CLIENT_ITEMS[3:4])
    fake.reply("Bonjour.")
    await chat(me, model=MODELS["vllm"], messages=HELLO, conversation=conversation["id"])
    dsn = server.app[SETTINGS].db_dsn
    query(
        dsn,
        """
        UPDATE llm_api.conversation_items
           SET body = jsonb_set(body, '{content}', (
                   SELECT jsonb_agg(CASE WHEN part->>'type' = 'input_file'
                                         THEN '{"file_id": null, "file_url": null, "file_data": null, "filename": null}' || part
                                         ELSE part - 'logprobs' END)
                     FROM jsonb_array_elements(body->'content') part))
         WHERE conversation_id = %s AND type = 'message'""",
        conversation["id"],
    )
    parts = [
        part
        for (body,) in query(dsn, "SELECT body FROM llm_api.conversation_items WHERE conversation_id = %s", conversation["id"])
        for part in body["content"]
    ]
    assert not [part for part in parts if "logprobs" in part]
    assert [part["file_data"] for part in parts if part["type"] == "input_file"] == [None, None]
    items = await assert_items_openai(me, conversation["id"], 4)
    assert [part["logprobs"] for part in output_texts(items)] == [[]] * 3
    assert [part for item in items for part in item["content"] if part["type"] == "input_file"] == [
        {"type": "input_file", "file_id": "file_abc123"},
        {"type": "input_file", "file_url": "https://example.com/report.pdf", "filename": "report.pdf"},
    ]


@pytest.mark.parametrize("provider", ["vllm"], indirect=True)
async def test_conversation_objects(me):
    conversation = await me.conversation(metadata={"topic": "weather"}, title="Météo")
    assert_openai(conversation, "ConversationResource")
    assert_openai(await me.call("GET", f"/v1/conversations/{conversation['id']}"), "ConversationResource")
    updated = await me.call("POST", f"/v1/conversations/{conversation['id']}", json={"metadata": {"topic": "rain"}})
    assert_openai(updated, "ConversationResource")
    item = (await me.add(conversation["id"], CLIENT_ITEMS[:1]))[0]
    after_delete = await me.call("DELETE", f"/v1/conversations/{conversation['id']}/items/{item['id']}")
    assert_openai(after_delete, "ConversationResource")  # deleting an item answers its conversation
    deleted = await me.call("DELETE", f"/v1/conversations/{conversation['id']}")
    assert_openai(deleted, "DeletedConversationResource")
