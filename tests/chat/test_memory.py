"""The memory service around a chat: recalled before the call, told about the exchange after.

A fake of Jan's memory-tools on loopback; its load and observe requests are asserted as it received
them. A memory service that fails, is slow or is gone never costs an answer.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

import aiohttp
import pytest

from tests.api.callers import Caller
from tests.chat.conftest import guest_caller
from tests.chat.test_persistence import (
    HELLO,
    MODEL,
    both_ways,
    chat_body,
    chat_headers,
    conversation_in_project,
    stream,
)
from tests.fakes.loopback import running
from tests.fakes.memory_service import FakeMemory

TIMEOUT = 0.5  # MEMORY_TIMEOUT in these tests
QUESTION = {"role": "user", "content": "Which buffer for pH 7?"}


@pytest.fixture
async def server(serve, vllm, memory):
    return await serve(
        VLLM_BASE_URL=f"{vllm.base_url}/v1", UPSTREAM_RETRIES=0, MEMORY_BASE_URL=memory.base_url, MEMORY_TIMEOUT=TIMEOUT
    )


async def set_memory_config(caller: Caller, **config) -> None:
    await caller.call("PATCH", "/v1/users/me/settings", json={"memory_config": config})


def loads(memory: FakeMemory) -> list[dict]:
    return [call["json"] for call in memory.requests if call["path"] == "/v1/memory/load"]


def memory_prompt(vllm) -> str | None:
    """The memory system message the provider received last, if any."""
    found = [
        message["content"]
        for message in vllm.requests[-1]["json"]["messages"]
        if message["role"] == "system" and message["content"].startswith("Use the following personal memory")
    ]
    assert len(found) <= 1
    return found[0] if found else None


# ---------------------------------------------------------------- recall


async def test_the_load_request_carries_the_caller_the_conversation_the_query_and_the_settings(vllm, memory, me):
    await set_memory_config(me, max_user_items=5, max_project_items=7, min_similarity=0.6)
    conversation = await conversation_in_project(me)
    await chat_headers(
        me, chat_body(conversation["id"], HELLO, {"role": "assistant", "content": "Bonjour !"}, QUESTION), streamed=False
    )
    assert loads(memory) == [
        {
            "user_id": me.user_id,
            "project_id": conversation["project_id"],
            "conversation_id": conversation["id"],
            "query": "Which buffer for pH 7?",  # the last user message
            "options": {"max_user_items": 5, "max_project_items": 7, "max_episodic_items": 3, "min_similarity": 0.6},
        }
    ]


async def test_without_a_conversation_the_load_names_only_the_caller(vllm, memory, me):
    await chat_headers(me, {"model": MODEL, "messages": [QUESTION]}, streamed=False)
    assert loads(memory) == [
        {
            "user_id": me.user_id,
            "query": "Which buffer for pH 7?",
            "options": {"max_user_items": 3, "max_project_items": 5, "max_episodic_items": 3, "min_similarity": 0.75},
        }
    ]
    # Project facts are only recalled for a project (memory-tools answers none without one).
    assert memory_prompt(vllm) == (
        "Use the following personal memory for this user when helpful, without overriding project or system "
        "instructions:\n- User memory: prefers SI units"
    )


@pytest.mark.parametrize(
    ("flags", "lines"),
    [
        ({}, ["User memory: prefers SI units", "Project fact - Lab: the lab is in Villeurbanne"]),
        (
            {"inject_episodic": True},
            [
                "User memory: prefers SI units",
                "Project fact - Lab: the lab is in Villeurbanne",
                "Recent event: asked about buffers yesterday",
            ],
        ),
        ({"inject_user_core": False}, ["Project fact - Lab: the lab is in Villeurbanne"]),
        (
            {"inject_semantic": False, "inject_episodic": True},
            ["User memory: prefers SI units", "Recent event: asked about buffers yesterday"],
        ),
    ],
)
async def test_the_inject_flags_choose_what_is_recalled_into_the_prompt(vllm, memory, me, flags, lines):
    await set_memory_config(me, **flags)
    conversation = await conversation_in_project(me)
    await chat_headers(me, chat_body(conversation["id"], QUESTION), streamed=False)
    assert memory_prompt(vllm).splitlines()[1:] == [f"- {line}" for line in lines]


async def test_with_nothing_to_inject_there_is_no_memory_message(vllm, memory, me):
    await set_memory_config(me, inject_user_core=False, inject_semantic=False)
    conversation = await conversation_in_project(me)
    headers = await chat_headers(me, chat_body(conversation["id"], QUESTION), streamed=False)
    assert headers["X-Applied-Prompt-Modules"] == "project_instruction"
    assert memory_prompt(vllm) is None


async def test_memory_switched_off_is_neither_asked_nor_told(vllm, memory, me):
    await set_memory_config(me, enabled=False)
    conversation = await me.conversation()
    headers = await chat_headers(me, chat_body(conversation["id"], QUESTION), streamed=False)
    assert "X-Applied-Prompt-Modules" not in headers
    await asyncio.sleep(0.2)  # an observe would have been sent by now
    assert memory.requests == []


# ---------------------------------------------------------------- a failing memory service


@pytest.mark.parametrize("fault", ["500", "slow", "not json", "gone"])
@both_ways
async def test_a_failing_memory_service_costs_the_memory_not_the_answer(vllm, memory, me, caplog, fault, streamed):
    if fault == "500":
        memory.fail(500)
    elif fault == "slow":
        memory.delay(TIMEOUT * 10)
    elif fault == "not json":
        memory.fail(200, "<html>maintenance</html>")
    else:
        await memory.stop()
    headers = await chat_headers(me, {"model": MODEL, "messages": [QUESTION]}, streamed=streamed)
    assert "X-Applied-Prompt-Modules" not in headers
    assert vllm.requests[-1]["json"]["messages"] == [QUESTION]
    assert any("memory load failed" in record.getMessage() for record in caplog.records)


# ---------------------------------------------------------------- observe


@both_ways
async def test_a_stored_exchange_is_sent_to_the_memory_service(vllm, memory, me, streamed):
    conversation = await conversation_in_project(me)
    vllm.reply("Use a phosphate buffer.")
    await chat_headers(
        me, chat_body(conversation["id"], HELLO, {"role": "assistant", "content": "Bonjour !"}, QUESTION), streamed=streamed
    )
    [observed] = await memory.wait_observed(1)
    times = [message.pop("created_at") for message in observed["messages"]]
    assert observed == {
        "user_id": me.user_id,
        "project_id": conversation["project_id"],
        "conversation_id": conversation["id"],
        "messages": [
            {"role": "user", "content": "Which buffer for pH 7?"},
            {"role": "assistant", "content": "Use a phosphate buffer."},
        ],
    }
    assert all(datetime.fromisoformat(moment.replace("Z", "+00:00")).tzinfo is not None for moment in times)


async def test_observing_does_not_hold_the_answer_back(serve, vllm, me):
    # A memory service that takes far longer to take note than the answer takes to arrive.
    async with running(FakeMemory()) as slow:
        slow.delay(60, on="observe")
        server = await serve(VLLM_BASE_URL=f"{vllm.base_url}/v1", MEMORY_BASE_URL=slow.base_url, MEMORY_TIMEOUT=30)
        async with aiohttp.ClientSession(base_url=str(server.make_url("/"))) as http:
            caller = await guest_caller(http)
            conversation = await caller.conversation()
            completion = await caller.call("POST", "/v1/chat/completions", json=chat_body(conversation["id"], QUESTION))
            assert completion["choices"][0]["message"]["content"] == "Bonjour !"
            # The answer is here while the memory service still holds the observe call (it waits 60 s).
            await slow.wait_observed(1)
            assert slow.pending == 0  # the delay was taken by that call, which is still waiting


async def test_observe_enabled_false_tells_nothing(vllm, memory, me):
    await set_memory_config(me, observe_enabled=False)
    conversation = await me.conversation()
    await chat_headers(me, chat_body(conversation["id"], QUESTION), streamed=False)
    await asyncio.sleep(0.2)
    assert [call["path"] for call in memory.requests] == ["/v1/memory/load"]  # recalled, not told


@pytest.mark.parametrize("why", ["no conversation", "store false", "failed"])
async def test_only_a_stored_answered_exchange_is_observed(vllm, memory, me, why):
    conversation = await me.conversation()
    if why == "no conversation":
        body = {"model": MODEL, "messages": [QUESTION]}
    elif why == "store false":
        body = chat_body(conversation["id"], QUESTION, store=False)
    else:
        vllm.fail(500)
        body = chat_body(conversation["id"], QUESTION)
    response = await me.client.post("/v1/chat/completions", json=body, headers=me.headers)
    assert response.status == (502 if why == "failed" else 200), await response.text()
    await asyncio.sleep(0.2)
    assert memory.observed == []


async def test_a_stream_cut_short_is_not_observed(vllm, memory, me):
    conversation = await me.conversation()
    vllm.stream_error(after_chunks=2)
    _, events = await stream(me, chat_body(conversation["id"], QUESTION))
    assert any(isinstance(event, dict) and "error" in event for event in events)
    await asyncio.sleep(0.2)
    assert memory.observed == []


async def test_a_failing_observe_is_logged_and_harmless(vllm, memory, me, caplog):
    memory.fail(500, on="observe")
    conversation = await me.conversation()
    caplog.set_level(logging.WARNING, logger="llm_api.chat.memory")
    await chat_headers(me, chat_body(conversation["id"], QUESTION), streamed=False)
    await memory.wait_observed(1)
    for _ in range(50):
        if any("memory observe failed" in record.getMessage() for record in caplog.records):
            break
        await asyncio.sleep(0.02)
    assert any("memory observe failed" in record.getMessage() for record in caplog.records)
    # The next chat goes through as usual.
    await chat_headers(me, chat_body(conversation["id"], QUESTION), streamed=False)
    assert len(await memory.wait_observed(2)) == 2
