"""Prompt assembly: project instruction, then profile, then memory, as the (fake) provider receives them.

The app runs against a fake vLLM and a fake memory service over real HTTP; the assertions are on the
messages the provider received, the ``X-Applied-Prompt-Modules`` header, and what the conversation
stored (prompt assembly is never conversation content).
"""

from __future__ import annotations

import pytest

from tests.api.callers import Caller
from tests.chat.conftest import guest_caller
from tests.chat.test_persistence import (
    HELLO,
    INSTRUCTION,
    assistant_item,
    both_ways,
    chat_body,
    chat_headers,
    conversation_in_project,
    items,
    output_text,
    user_item,
)

PRECEDENCE = (
    "User-level settings are preferences for style and context. If they ever conflict with explicit project or "
    "system instructions, always follow the project or system instructions."
)
PROFILE = {
    "base_style": "Concise",
    "custom_instructions": "Always give units.",
    "nick_name": "Sam",
    "occupation": "chemist",
    "more_about_you": "I live in Lyon.",
}
PROFILE_TEXT = (
    f"{PRECEDENCE}\n\n"
    "Use a concise style: brief, direct answers with minimal filler.\n\n"
    "Custom instructions from the user:\nAlways give units.\n\n"
    'User context:\n- Address the user as "Sam".\n- Occupation: chemist\n- About the user: I live in Lyon.'
)
MEMORY_TEXT = (
    "Use the following personal memory for this user when helpful, without overriding project or system "
    "instructions:\n"
    "- User memory: prefers SI units\n"
    "- Project fact - Lab: the lab is in Villeurbanne"
)


@pytest.fixture
async def server(serve, vllm, memory):
    return await serve(VLLM_BASE_URL=f"{vllm.base_url}/v1", UPSTREAM_RETRIES=0, MEMORY_BASE_URL=memory.base_url)


async def set_profile(caller: Caller, **profile) -> None:
    await caller.call("PATCH", "/v1/users/me/settings", json={"profile_settings": profile})


def system(text: str) -> dict:
    return {"role": "system", "content": text}


@both_ways
async def test_project_instruction_profile_and_memory_reach_the_provider_in_that_order(vllm, me, streamed):
    await set_profile(me, **PROFILE)
    conversation = await conversation_in_project(me)
    own = system("Be brief.")
    headers = await chat_headers(me, chat_body(conversation["id"], own, HELLO), streamed=streamed)
    assert headers["X-Applied-Prompt-Modules"] == "project_instruction,profile,memory"
    assert vllm.requests[-1]["json"]["messages"] == [
        own,
        system(INSTRUCTION),
        system(PROFILE_TEXT),
        system(MEMORY_TEXT),
        HELLO,
    ]
    # What was assembled is not conversation content.
    assert await items(me, conversation["id"]) == [user_item("Dis bonjour"), assistant_item(output_text("Bonjour !"))]


async def test_without_a_system_message_of_the_client_the_parts_come_first(vllm, me):
    await set_profile(me, **PROFILE)
    conversation = await conversation_in_project(me)
    headers = await chat_headers(me, chat_body(conversation["id"], HELLO), streamed=False)
    assert headers["X-Applied-Prompt-Modules"] == "project_instruction,profile,memory"
    assert vllm.requests[-1]["json"]["messages"] == [system(INSTRUCTION), system(PROFILE_TEXT), system(MEMORY_TEXT), HELLO]


async def test_the_default_profile_adds_nothing(vllm, memory, me):
    memory.remember()  # nothing to recall either
    headers = await chat_headers(me, {"model": "vllm/jan-v1-4b", "messages": [HELLO]}, streamed=False)
    assert "X-Applied-Prompt-Modules" not in headers
    assert vllm.requests[-1]["json"]["messages"] == [HELLO]


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        (
            {"nick_name": "Sam"},
            'Use a friendly, warm, and encouraging tone while staying helpful.\n\nUser context:\n- Address the user as "Sam".',
        ),
        ({"base_style": "Professional"}, "Use a professional, clear, and structured tone appropriate for business settings."),
        (
            {"custom_instructions": "  Answer in haiku.  "},
            "Use a friendly, warm, and encouraging tone while staying helpful.\n\n"
            "Custom instructions from the user:\nAnswer in haiku.",
        ),
    ],
)
async def test_a_profile_adds_only_what_was_personalised(vllm, memory, me, profile, expected):
    memory.remember()
    await set_profile(me, **profile)
    headers = await chat_headers(me, {"model": "vllm/jan-v1-4b", "messages": [HELLO]}, streamed=False)
    assert headers["X-Applied-Prompt-Modules"] == "profile"
    assert vllm.requests[-1]["json"]["messages"] == [system(f"{PRECEDENCE}\n\n{expected}"), HELLO]


async def test_a_changed_profile_applies_to_the_next_request(vllm, memory, me):
    memory.remember()
    await set_profile(me, nick_name="Sam")
    await chat_headers(me, {"model": "vllm/jan-v1-4b", "messages": [HELLO]}, streamed=False)
    await set_profile(me, nick_name="")
    headers = await chat_headers(me, {"model": "vllm/jan-v1-4b", "messages": [HELLO]}, streamed=False)
    assert "X-Applied-Prompt-Modules" not in headers
    assert vllm.requests[-1]["json"]["messages"] == [HELLO]


async def test_one_users_profile_never_reaches_anothers_chat(vllm, memory, http, me):
    memory.remember()
    await set_profile(me, **PROFILE)
    someone_else = await guest_caller(http)
    headers = await chat_headers(someone_else, {"model": "vllm/jan-v1-4b", "messages": [HELLO]}, streamed=False)
    assert "X-Applied-Prompt-Modules" not in headers
    assert vllm.requests[-1]["json"]["messages"] == [HELLO]


@both_ways
@pytest.mark.parametrize(
    ("skipped", "left"),
    [
        (["profile"], "project_instruction,memory"),
        (["memory"], "project_instruction,profile"),
        (["profile", "memory", "profile"], "project_instruction"),
        (["project_instruction", "profile", "memory"], None),
    ],
)
async def test_disable_prompt_modules_skips_parts_for_one_request(vllm, memory, me, streamed, skipped, left):
    await set_profile(me, **PROFILE)
    conversation = await conversation_in_project(me)
    headers = await chat_headers(me, chat_body(conversation["id"], disable_prompt_modules=skipped), streamed=streamed)
    assert headers.get("X-Applied-Prompt-Modules") == left
    texts = {"project_instruction": INSTRUCTION, "profile": PROFILE_TEXT, "memory": MEMORY_TEXT}
    assert vllm.requests[-1]["json"]["messages"] == [*(system(texts[name]) for name in (left or "").split(",") if name), HELLO]
    if "memory" in skipped:
        assert [call["path"] for call in memory.requests].count("/v1/memory/load") == 0  # not even asked


async def test_a_part_the_client_already_sent_is_not_added_again(vllm, me):
    await set_profile(me, **PROFILE)
    conversation = await conversation_in_project(me)
    sent = [system(PROFILE_TEXT), HELLO]
    headers = await chat_headers(me, chat_body(conversation["id"], *sent), streamed=False)
    assert headers["X-Applied-Prompt-Modules"] == "project_instruction,memory"
    received = vllm.requests[-1]["json"]["messages"]
    assert received == [system(PROFILE_TEXT), system(INSTRUCTION), system(MEMORY_TEXT), HELLO]
    assert [message["content"] for message in received].count(PROFILE_TEXT) == 1


async def test_an_unknown_prompt_module_is_a_400(vllm, me):
    error = await me.error(
        "POST",
        "/v1/chat/completions",
        400,
        json={"model": "vllm/jan-v1-4b", "messages": [HELLO], "disable_prompt_modules": ["persona"]},
    )
    assert error["param"] == "disable_prompt_modules[0]"
    assert [call["path"] for call in vllm.requests] == ["/v1/models"]  # listed at start-up; no chat reached it
