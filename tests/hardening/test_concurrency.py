"""Many chat completions at once into a few shared conversations, through one or two app instances.

200 requests fired together (half streamed), into 10 conversations owned by 3 guests (4/3/3), each
request with its own text. Afterwards every exchange is stored exactly once, whole and contiguous
(the user item immediately followed by its assistant item), in the conversation it was sent to and
nowhere else; nobody reaches another user's conversation.

Contiguity is what the service guarantees, not luck: an exchange is one statement whose first part
updates the conversation's row, so concurrent exchanges into one conversation take that row lock in
turn, and the items' ``seq`` values of one exchange are drawn only once the lock is held (see
``_RECORD_EXCHANGE`` in llm_api/db/conversations.py).

With two instances on one database (as several workers or hosts run), requests and reads are spread
over both.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import aiohttp
import pytest

from llm_api.app import create_app
from tests.conftest import test_settings
from tests.fakes.loopback import running
from tests.fakes.openai_upstream import DEFAULT_TEXT, FakeOpenAIUpstream
from tests.hardening.support import (
    Answer,
    all_items,
    bearer,
    call,
    chat,
    exchanges,
    guest,
    item_text,
    new_conversation,
    stream_finished_cleanly,
)

REQUESTS = 200
OWNED = (4, 3, 3)  # conversations per user
PROVIDER_DELAY = 0.5  # s each answer is held back by the provider
LOAD_LIMIT = 180.0  # s for the whole burst: a hang fails the test instead of hanging the run


@pytest.fixture
async def vllm() -> FakeOpenAIUpstream:
    async with running(FakeOpenAIUpstream(models=("jan-v1-4b",))) as fake:
        yield fake


@pytest.fixture
async def http():
    # No connection limit: the 200 requests really are in flight together.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session


def streamed_text(answer: Answer) -> str:
    return "".join(
        choice["delta"].get("content") or ""
        for event in answer.events
        if isinstance(event, dict)
        for choice in event.get("choices") or []
    )


def check_answer(answer: Answer, conversation: str, stream: bool) -> None:
    assert answer.status == 200, answer
    if stream:
        assert stream_finished_cleanly(answer), answer
        assert streamed_text(answer) == DEFAULT_TEXT, answer
        summaries = [event["conversation"] for event in answer.events if isinstance(event, dict) and "conversation" in event]
        assert [summary["id"] for summary in summaries] == [conversation], answer
    else:
        assert answer.body["choices"][0]["message"]["content"] == DEFAULT_TEXT, answer
        assert answer.body["conversation"]["id"] == conversation, answer


@pytest.mark.parametrize("instances", [1, 2], ids=["one-instance", "two-instances"])
async def test_concurrent_chats_store_every_turn_once_in_order_and_never_across_users(
    aiohttp_server, make_database, vllm, http, instances
):
    dsn = make_database()
    bases = []
    for _ in range(instances):  # every instance on the same database
        server = await aiohttp_server(
            create_app(
                test_settings(
                    dsn,
                    VLLM_BASE_URL=f"{vllm.base_url}/v1",
                    UPSTREAM_RETRIES=0,
                    RATE_LIMIT_PER_MINUTE=0,
                )
            )
        )
        bases.append(str(server.make_url("")).rstrip("/"))

    users = [await guest(http, bases[index % instances]) for index in range(len(OWNED))]
    owner: dict[str, int] = {}  # conversation -> index of its user
    for index, count in enumerate(OWNED):
        for _ in range(count):
            owner[await new_conversation(http, bases[0], users[index]["access_token"])] = index
    conversations = list(owner)
    assert len(conversations) == 10

    # Request n goes to conversation n % 10; each conversation gets 20: half streamed, half through each instance.
    plan = []
    for n in range(REQUESTS):
        conversation, turn = conversations[n % len(conversations)], n // len(conversations)
        plan.append(
            {
                "text": f"req-{n:03d}",
                "conversation": conversation,
                "stream": turn % 2 == 0,
                "base": bases[(turn // 2) % instances],
                "token": users[owner[conversation]]["access_token"],
            }
        )
    random.Random(7).shuffle(plan)
    # Every answer held back a moment: all 200 are in flight together, and their exchanges reach the
    # database in one rush, 20 at a time into each conversation.
    for _ in range(REQUESTS):
        vllm.delay(PROVIDER_DELAY)

    async def send(request: dict) -> Answer:
        return await chat(
            http,
            request["base"],
            request["token"],
            request["text"],
            conversation=request["conversation"],
            stream=request["stream"],
        )

    answers = await asyncio.wait_for(asyncio.gather(*(send(request) for request in plan)), LOAD_LIMIT)
    for request, answer in zip(plan, answers, strict=True):
        check_answer(answer, request["conversation"], request["stream"])
    assert sum(1 for r in vllm.requests if r["path"] == "/v1/chat/completions") == REQUESTS

    sent_to: dict[str, Counter] = {conversation: Counter() for conversation in conversations}
    for request in plan:
        sent_to[request["conversation"]][request["text"]] += 1
    everything = {request["text"] for request in plan}

    for position, conversation in enumerate(conversations):
        user = users[owner[conversation]]
        base = bases[position % instances]  # read through every instance
        stored = await all_items(http, base, user["access_token"], conversation)
        assert len(stored) == 2 * sum(sent_to[conversation].values()), conversation
        pairs = exchanges(stored)  # user item, then its assistant item, right after it, every time
        said = Counter(item_text(user_item) for user_item, _ in pairs)
        # Every turn sent here stored exactly once, and nothing sent elsewhere (another conversation's,
        # another user's) found its way in.
        assert said == sent_to[conversation], conversation
        assert set(said) <= everything
        for _, assistant in pairs:
            assert assistant["status"] == "completed" and item_text(assistant) == DEFAULT_TEXT
        # The conversation was titled by the exchange stored first, in the same statement.
        got = await call(http, "GET", f"{base}/v1/conversations/{conversation}", headers=bearer(user["access_token"]))
        assert got.status == 200, got
        assert got.body["title"] == item_text(pairs[0][0]), got

    # Nobody reaches another user's conversations: not the conversation, not its items, not in their list.
    for index, user in enumerate(users):
        headers = bearer(user["access_token"])
        for position, conversation in enumerate(conversations):
            base = bases[position % instances]
            if owner[conversation] == index:
                continue
            for path in (f"/v1/conversations/{conversation}", f"/v1/conversations/{conversation}/items"):
                refused = await call(http, "GET", f"{base}{path}", headers=headers)
                assert refused.status == 404, refused
                assert refused.body["error"]["code"] == "conversation_not_found", refused
        listed = await call(http, "GET", f"{bases[-1]}/v1/conversations", params={"limit": "100"}, headers=headers)
        assert listed.status == 200, listed
        assert {row["id"] for row in listed.body["data"]} == {c for c, i in owner.items() if i == index}
