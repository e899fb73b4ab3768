"""Chat completions stored in conversations, against a fake vLLM over real HTTP.

With ``conversation`` (and ``store``, default true) the request's last message and the answer become
conversation items in the OpenAI Conversations shapes, seen the same way through our HTTP API and the
official SDK; the response (or, streamed, one ``choices: []`` chunk right before ``[DONE]``) names the
conversation and its title. Failures before the answer began store nothing; a stream cut short (the
provider failing, or the client hanging up) stores what arrived as an ``incomplete`` answer, and a client
hanging up closes the provider's connection at once. A conversation filed under a project gets the
project's instruction as its first system message, exactly once.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiohttp import web

from llm_api.app import create_app
from tests.api.callers import Caller
from tests.chat.conftest import guest_caller, sdk
from tests.conftest import test_settings
from tests.sse import data_events

MODEL = "vllm/jan-v1-4b"
HELLO = {"role": "user", "content": "Dis bonjour"}


@pytest.fixture
def server(vllm_server):
    return vllm_server


@pytest.fixture
async def someone_else(http) -> Caller:
    return await guest_caller(http)


def chat_body(conversation, *messages: dict, **extra) -> dict:
    return {"model": MODEL, "messages": list(messages or [HELLO]), "conversation": conversation, **extra}


async def stream(caller: Caller, body: dict, status: int = 200) -> tuple[aiohttp.ClientResponse, list]:
    """A streamed chat: the response and its events in order (parsed JSON, or the string ``[DONE]``)."""
    async with caller.client.post("/v1/chat/completions", json={**body, "stream": True}, headers=caller.headers) as response:
        assert response.status == status, await response.text()
        assert response.content_type == "text/event-stream"
        return response, await data_events(response)


def streamed_text(events: list) -> str:
    return "".join(
        choice["delta"].get("content") or ""
        for event in events
        if isinstance(event, dict)
        for choice in event.get("choices") or []
    )


async def items(caller: Caller, conversation_id: str) -> list[dict]:
    """The conversation's items, oldest first, without their ids and times."""
    page = await caller.items(conversation_id, order="asc")
    for item in page["data"]:
        assert item["id"].startswith("msg_") and item["created_at"] > 0
    return [{key: value for key, value in item.items() if key not in ("id", "created_at")} for item in page["data"]]


def user_item(text: str) -> dict:
    return {"type": "message", "role": "user", "status": "completed", "content": [{"type": "input_text", "text": text}]}


def assistant_item(*parts: dict, status: str = "completed") -> dict:
    return {"type": "message", "role": "assistant", "status": status, "content": list(parts)}


def output_text(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


async def answer(caller: Caller, body: dict, *, streamed: bool) -> dict:
    """The ``conversation`` the answer names, checking where it comes: in the completion, or in exactly
    one ``choices: []`` chunk right before ``[DONE]``."""
    if not streamed:
        completion = await caller.call("POST", "/v1/chat/completions", json=body)
        assert completion["object"] == "chat.completion"
        return completion["conversation"]
    _, events = await stream(caller, body)
    assert events[-1] == "[DONE]"
    carrying = [event for event in events[:-1] if "conversation" in event]
    assert carrying == [events[-2]]
    assert events[-2]["choices"] == [] and events[-2]["object"] == "chat.completion.chunk"
    return events[-2]["conversation"]


both_ways = pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])


# ---------------------------------------------------------------- what is stored


@both_ways
@pytest.mark.parametrize("as_object", [False, True], ids=["id", "object"])
async def test_the_last_message_and_the_answer_become_items(vllm, me, streamed, as_object):
    conversation = await me.conversation()
    vllm.reply("Bonjour, comment vas-tu ?")
    reference = {"id": conversation["id"]} if as_object else conversation["id"]
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Salut"},
        {"role": "assistant", "content": "Salut !"},
        HELLO,
    ]
    named = await answer(me, chat_body(reference, *history), streamed=streamed)
    assert named == {"id": conversation["id"], "title": "Salut"}
    assert await items(me, conversation["id"]) == [
        user_item("Dis bonjour"),
        assistant_item(output_text("Bonjour, comment vas-tu ?")),
    ]
    # Jan's extensions are ours: none of them reaches the provider.
    sent = vllm.requests[-1]["json"]
    assert sent["messages"] == history
    assert not {"conversation", "store", "store_reasoning", "disable_prompt_modules"} & set(sent)


@both_ways
async def test_the_sdk_lists_the_stored_items_in_openai_shapes(vllm_server, vllm, me, streamed):
    conversation = await me.conversation()
    vllm.reply("Bonjour !")
    await answer(me, chat_body(conversation["id"]), streamed=streamed)
    async with sdk(vllm_server, me.headers["Authorization"].removeprefix("Bearer ")) as client:
        page = await client.conversations.items.list(conversation["id"], order="asc")
    question, reply = page.data
    assert (question.type, question.role, question.status) == ("message", "user", "completed")
    assert [(part.type, part.text) for part in question.content] == [("input_text", "Dis bonjour")]
    assert (reply.type, reply.role, reply.status) == ("message", "assistant", "completed")
    assert [(part.type, part.text, part.annotations) for part in reply.content] == [("output_text", "Bonjour !", [])]
    assert page.has_more is False


@both_ways
async def test_a_tool_call_in_the_answer_becomes_a_function_call_item(vllm, me, streamed):
    conversation = await me.conversation()
    vllm.reply(tool_calls=[{"id": "call_weather1", "name": "get_weather", "arguments": {"city": "Lyon"}}])
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    await answer(
        me, chat_body(conversation["id"], {"role": "user", "content": "Weather in Lyon?"}, tools=tools), streamed=streamed
    )
    assert await items(me, conversation["id"]) == [
        user_item("Weather in Lyon?"),
        {
            "type": "function_call",
            "status": "completed",
            "call_id": "call_weather1",
            "name": "get_weather",
            "arguments": '{"city": "Lyon"}',
        },
    ]


async def test_a_tool_message_as_last_input_becomes_a_function_call_output_item(vllm, me):
    conversation = await me.conversation()
    vllm.reply("It is 18°C in Lyon.")
    call = {"id": "call_weather1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Lyon"}'}}
    await answer(
        me,
        chat_body(
            conversation["id"],
            {"role": "user", "content": "Weather in Lyon?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_weather1", "content": "18°C, sunny"},
        ),
        streamed=False,
    )
    assert await items(me, conversation["id"]) == [
        {"type": "function_call_output", "status": "completed", "call_id": "call_weather1", "output": "18°C, sunny"},
        assistant_item(output_text("It is 18°C in Lyon.")),
    ]


@both_ways
@pytest.mark.parametrize("store_reasoning", [None, False, True])
async def test_reasoning_is_stored_only_when_asked(vllm, me, streamed, store_reasoning):
    conversation = await me.conversation()
    vllm.reply("Paris.", reasoning="The capital of France is Paris.")
    extra = {} if store_reasoning is None else {"store_reasoning": store_reasoning}
    await answer(me, chat_body(conversation["id"], **extra), streamed=streamed)
    reasoning = [{"type": "reasoning_text", "text": "The capital of France is Paris."}] if store_reasoning else []
    assert (await items(me, conversation["id"]))[1] == assistant_item(*reasoning, output_text("Paris."))


@both_ways
async def test_store_false_stores_nothing_but_names_the_conversation(vllm, me, streamed):
    conversation = await me.conversation()
    named = await answer(me, chat_body(conversation["id"], store=False), streamed=streamed)
    assert named == {"id": conversation["id"], "title": None}
    assert await items(me, conversation["id"]) == []
    assert (await me.call("GET", f"/v1/conversations/{conversation['id']}"))["title"] is None
    assert vllm.requests[-1]["path"] == "/v1/chat/completions"  # the chat itself happened


async def test_the_conversation_chunk_comes_after_the_usage_chunk(vllm, me):
    conversation = await me.conversation()
    vllm.reply("Salut", usage=(9, 2))
    _, events = await stream(me, chat_body(conversation["id"], stream_options={"include_usage": True}))
    usage, named, done = events[-3:]
    assert (usage["choices"], usage["usage"]["prompt_tokens"], usage["usage"]["completion_tokens"]) == ([], 9, 2)
    assert "conversation" not in usage
    assert (named["choices"], named["conversation"], done) == ([], {"id": conversation["id"], "title": "Dis bonjour"}, "[DONE]")
    assert named["id"] == usage["id"] == events[0]["id"]


async def test_without_a_conversation_nothing_is_named(vllm, me):
    completion = await me.call("POST", "/v1/chat/completions", json={"model": MODEL, "messages": [HELLO]})
    assert "conversation" not in completion
    _, events = await stream(me, {"model": MODEL, "messages": [HELLO]})
    assert not [event for event in events if isinstance(event, dict) and "conversation" in event]


# ---------------------------------------------------------------- titles


@both_ways
@pytest.mark.parametrize(
    "first_user_message,title",
    [
        ("Plan a weekend in Lyon\nWith trains, not planes.", "Plan a weekend in Lyon"),
        ("  Plan   a weekend  ", "Plan a weekend"),
        (
            "Tell me everything you know about the long history of the beautiful city of Lyon",
            "Tell me everything you know about the long history of the…",
        ),
        ("x" * 80, "x" * 60 + "…"),
    ],
)
async def test_an_untitled_conversation_is_titled_from_the_first_user_message(vllm, me, streamed, first_user_message, title):
    conversation = await me.conversation()
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": first_user_message},
        {"role": "assistant", "content": "Sure."},
        {"role": "user", "content": "Go on"},
    ]
    named = await answer(me, chat_body(conversation["id"], *messages), streamed=streamed)
    assert named == {"id": conversation["id"], "title": title}
    assert (await me.call("GET", f"/v1/conversations/{conversation['id']}"))["title"] == title


@both_ways
async def test_an_existing_title_is_kept(vllm, me, streamed):
    conversation = await me.conversation(title="Weekend plans")
    named = await answer(me, chat_body(conversation["id"]), streamed=streamed)
    assert named == {"id": conversation["id"], "title": "Weekend plans"}
    assert (await me.call("GET", f"/v1/conversations/{conversation['id']}"))["title"] == "Weekend plans"


# ---------------------------------------------------------------- ownership and failures


@both_ways
async def test_another_users_conversation_is_not_found_and_the_provider_never_called(vllm, me, someone_else, streamed):
    theirs = await someone_else.conversation()
    body = chat_body(theirs["id"], stream=streamed)
    error = await me.error("POST", "/v1/chat/completions", 404, json=body)
    assert (error["code"], error["param"]) == ("conversation_not_found", "conversation_id")
    assert theirs["id"] in error["message"]
    assert [request["path"] for request in vllm.requests if request["method"] == "POST"] == []
    assert await items(someone_else, theirs["id"]) == []
    assert (await someone_else.call("GET", f"/v1/conversations/{theirs['id']}"))["title"] is None


@both_ways
async def test_a_call_failing_before_the_answer_began_stores_nothing(vllm, me, streamed):
    conversation = await me.conversation()
    vllm.fail(500)
    error = await me.error("POST", "/v1/chat/completions", 502, json=chat_body(conversation["id"], stream=streamed))
    assert error["code"] == "upstream_error" and "Internal server error" in error["message"]
    assert await items(me, conversation["id"]) == []
    assert (await me.call("GET", f"/v1/conversations/{conversation['id']}"))["title"] is None


@pytest.mark.parametrize("failure", ["cut", "stream_error"])
async def test_a_stream_failing_midway_stores_what_arrived_as_incomplete(vllm, me, failure):
    conversation = await me.conversation()
    # The default reply, "Bonjour !", streams as: role chunk, "Bonjour", " !", the finish chunk.
    getattr(vllm, failure)(2)
    _, events = await stream(me, chat_body(conversation["id"]))
    assert streamed_text(events) == "Bonjour"
    assert events[-1] == "[DONE]" and set(events[-2]) == {"error"}
    assert not [event for event in events[:-1] if "conversation" in event]
    assert await items(me, conversation["id"]) == [
        user_item("Dis bonjour"),
        assistant_item(output_text("Bonjour"), status="incomplete"),
    ]


@pytest.fixture(params=["run_app", "test_server"])
async def hang_up_url(request, aiohttp_server, make_database, vllm):
    """The app's URL, served either the way ``web.run_app`` (``llm-api serve``) serves it, where a client
    hanging up does not cancel the request's handler so the service has to notice by itself, or by
    aiohttp's test server, which cancels the handler."""
    app = create_app(test_settings(make_database(), VLLM_BASE_URL=f"{vllm.base_url}/v1", UPSTREAM_RETRIES=0))
    if request.param == "test_server":
        yield str((await aiohttp_server(app)).make_url("/"))
        return
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/"
    finally:
        await runner.cleanup()


async def test_a_client_hanging_up_midstream_stores_the_partial_answer_and_closes_the_provider(vllm, hang_up_url):
    async with aiohttp.ClientSession(base_url=hang_up_url) as http:
        me = await guest_caller(http)
        conversation = await me.conversation()
        vllm.stall(after_chunks=2, seconds=30)  # the role chunk and "Bonjour", then silence
        received = []
        async with aiohttp.ClientSession() as own:  # a connection of its own, to hang up on
            response = await own.post(
                f"{hang_up_url}v1/chat/completions", headers=me.headers, json=chat_body(conversation["id"], stream=True)
            )
            assert response.status == 200
            async for line in response.content:
                if line.startswith(b"data: "):
                    received.append(json.loads(line[len(b"data: ") :]))
                if streamed_text(received) == "Bonjour":
                    break
            response.close()  # drops the connection
            await asyncio.wait_for(vllm.disconnected.wait(), 1.0)  # the provider's connection follows
        assert await stored_eventually(me, conversation["id"], 2) == [
            user_item("Dis bonjour"),
            assistant_item(output_text("Bonjour"), status="incomplete"),
        ]
        assert vllm.active_streams == 0


async def test_a_client_hanging_up_before_the_first_chunk_closes_the_provider_and_stores_nothing(vllm, hang_up_url):
    async with aiohttp.ClientSession(base_url=hang_up_url) as http:
        me = await guest_caller(http)
        conversation = await me.conversation()
        vllm.delay(5)  # a slow prefill: the provider's headers at once, its first chunk seconds later
        own = aiohttp.ClientSession()  # a connection of its own, to hang up on
        call = asyncio.create_task(
            own.post(f"{hang_up_url}v1/chat/completions", headers=me.headers, json=chat_body(conversation["id"], stream=True))
        )
        for _ in range(500):  # until the provider is working on it
            if vllm.active_streams:
                break
            await asyncio.sleep(0.01)
        assert vllm.active_streams == 1 and not call.done()
        call.cancel()
        await own.close()  # drops the connection
        await asyncio.wait_for(vllm.disconnected.wait(), 1.0)  # the provider's connection follows
        assert await items(me, conversation["id"]) == []


async def stored_eventually(caller: Caller, conversation_id: str, count: int) -> list[dict]:
    """The items once there are ``count`` of them (the server writes them after the client has gone)."""
    for _ in range(100):
        found = await items(caller, conversation_id)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    return await items(caller, conversation_id)


# ---------------------------------------------------------------- project instruction

INSTRUCTION = "Answer in French, and cite your sources."


async def conversation_in_project(caller: Caller, instruction: str | None = INSTRUCTION) -> dict:
    project = await caller.call("POST", "/v1/projects", json={"name": "Research", "instruction": instruction}, status=201)
    return await caller.conversation(project_id=project["id"])


async def chat_headers(caller: Caller, body: dict, *, streamed: bool) -> dict:
    """The response headers of a chat (streamed or not) that succeeded."""
    if streamed:
        response, events = await stream(caller, body)
        assert events[-1] == "[DONE]"
        return dict(response.headers)
    response = await caller.client.post("/v1/chat/completions", json=body, headers=caller.headers)
    assert response.status == 200, await response.text()
    return dict(response.headers)


@both_ways
async def test_the_project_instruction_is_the_first_system_message(vllm, me, streamed):
    conversation = await conversation_in_project(me)
    headers = await chat_headers(me, chat_body(conversation["id"], HELLO), streamed=streamed)
    assert headers["X-Applied-Prompt-Modules"] == "project_instruction"
    assert vllm.requests[-1]["json"]["messages"] == [{"role": "system", "content": INSTRUCTION}, HELLO]
    # The instruction is prompt assembly, not conversation content.
    assert await items(me, conversation["id"]) == [user_item("Dis bonjour"), assistant_item(output_text("Bonjour !"))]


@both_ways
async def test_the_clients_own_system_message_stays_first(vllm, me, streamed):
    conversation = await conversation_in_project(me)
    own = {"role": "system", "content": "Be brief."}
    headers = await chat_headers(me, chat_body(conversation["id"], own, HELLO), streamed=streamed)
    assert headers["X-Applied-Prompt-Modules"] == "project_instruction"
    assert vllm.requests[-1]["json"]["messages"] == [own, {"role": "system", "content": INSTRUCTION}, HELLO]
    # The instruction is prompt assembly, not conversation content.
    assert await items(me, conversation["id"]) == [user_item("Dis bonjour"), assistant_item(output_text("Bonjour !"))]


@pytest.mark.parametrize("role", ["system", "developer"])
async def test_the_project_instruction_is_never_sent_twice(vllm, me, role):
    conversation = await conversation_in_project(me)
    messages = [{"role": role, "content": INSTRUCTION}, HELLO]
    headers = await chat_headers(me, chat_body(conversation["id"], *messages), streamed=False)
    sent = vllm.requests[-1]["json"]["messages"]
    assert sent == messages
    assert [message["content"] for message in sent].count(INSTRUCTION) == 1
    assert "X-Applied-Prompt-Modules" not in headers  # nothing was added


@both_ways
async def test_disable_prompt_modules_skips_the_project_instruction(vllm, me, streamed):
    conversation = await conversation_in_project(me)
    body = chat_body(conversation["id"], disable_prompt_modules=["project_instruction"])
    headers = await chat_headers(me, body, streamed=streamed)
    assert "X-Applied-Prompt-Modules" not in headers
    assert vllm.requests[-1]["json"]["messages"] == [HELLO]


@pytest.mark.parametrize("instruction", [None, "   "])
async def test_a_project_without_an_instruction_adds_nothing(vllm, me, instruction):
    conversation = await conversation_in_project(me, instruction)
    headers = await chat_headers(me, chat_body(conversation["id"]), streamed=False)
    assert "X-Applied-Prompt-Modules" not in headers
    assert vllm.requests[-1]["json"]["messages"] == [HELLO]


@both_ways
async def test_without_a_project_there_is_no_prompt_module(vllm, me, streamed):
    conversation = await me.conversation()
    headers = await chat_headers(me, chat_body(conversation["id"]), streamed=streamed)
    assert "X-Applied-Prompt-Modules" not in headers
    assert vllm.requests[-1]["json"]["messages"] == [HELLO]
