"""The official OpenAI SDK (3.57.0) drives the Conversations API of the live server, in the SDK's
strict response validation mode and with strict contract checks on the server side.

Every call below is an ordinary SDK call: what a user of ``openai.OpenAI`` pointed at this service
would write. The SDK raises ``APIResponseValidationError`` on a response its models reject, and the
server answers 500 ``contract_drift`` on a response openapi.yaml rejects, so a passing call shows
both sides agree.
"""

from __future__ import annotations

import json
import urllib.request

import openai
import pytest

INCLUDE = ["message.output_text.logprobs"]


def guest_token(base_url: str) -> str:
    request = urllib.request.Request(f"{base_url}/auth/guest-login", method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201
        return json.loads(response.read())["access_token"]


def sdk(live_server, api_key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{live_server.url}/v1",
        api_key=api_key or guest_token(live_server.url),
        max_retries=0,
        _strict_response_validation=True,
    )


@pytest.fixture
def oai(live_server) -> openai.OpenAI:
    """An SDK client for a fresh guest (each test sees only its own conversations)."""
    with sdk(live_server) as client:
        yield client


def texts(items) -> list[str]:
    return [item.content[0].text for item in items]


def user_messages(start: int, count: int) -> list[dict]:
    return [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": f"m{n}"}]}
        for n in range(start, start + count)
    ]


def test_conversation_lifecycle(oai):
    conversation = oai.conversations.create(
        items=[
            {"role": "user", "content": "Where should I eat in Lyon?"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Somewhere cheap."}]},
            {
                "type": "message",
                "id": "msg_lyon1",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Try a bouchon.", "annotations": []}],
            },
        ],
        metadata={"topic": "travel", "city": "lyon"},
    )
    assert isinstance(conversation, openai.types.conversations.Conversation)
    assert conversation.id.startswith("conv_") and conversation.object == "conversation"
    assert conversation.metadata == {"topic": "travel", "city": "lyon"}
    assert conversation.created_at > 0

    retrieved = oai.conversations.retrieve(conversation.id)
    assert (retrieved.id, retrieved.metadata, retrieved.created_at) == (
        conversation.id,
        conversation.metadata,
        conversation.created_at,
    )

    items = oai.conversations.items.list(conversation.id, order="asc")
    assert [(item.role, part.type, part.text) for item in items.data for part in item.content] == [
        ("user", "input_text", "Where should I eat in Lyon?"),
        ("user", "input_text", "Somewhere cheap."),
        ("assistant", "output_text", "Try a bouchon."),
    ]
    assert items.data[2].id == "msg_lyon1"
    assert items.data[2].content[0].annotations == []
    assert items.has_more is False

    updated = oai.conversations.update(conversation.id, metadata={"topic": "food"})
    assert updated.metadata == {"topic": "food"}  # replaced, not merged
    assert oai.conversations.retrieve(conversation.id).metadata == {"topic": "food"}

    deleted = oai.conversations.delete(conversation.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (conversation.id, "conversation.deleted", True)
    with pytest.raises(openai.NotFoundError) as caught:
        oai.conversations.retrieve(conversation.id)
    assert caught.value.status_code == 404 and caught.value.param == "conversation_id"
    with pytest.raises(openai.NotFoundError):
        oai.conversations.items.list(conversation.id)


def test_items_create_list_retrieve_delete(oai):
    conversation = oai.conversations.create()
    assert conversation.metadata == {}

    created = oai.conversations.items.create(
        conversation.id,
        items=[
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "What is 2 + 2?"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "4", "annotations": []}]},
            {"role": "assistant", "content": "Anything else?"},
        ],
    )
    assert isinstance(created, openai.types.conversations.ConversationItemList)
    assert created.object == "list" and created.has_more is False
    assert texts(created.data) == ["What is 2 + 2?", "4", "Anything else?"]
    assert [item.content[0].type for item in created.data] == ["input_text", "output_text", "output_text"]
    assert created.first_id == created.data[0].id and created.last_id == created.data[-1].id
    assert all(item.id.startswith("msg_") and item.status == "completed" for item in created.data)
    assert len({item.id for item in created.data}) == 3

    listed = oai.conversations.items.list(conversation.id, order="asc")
    assert [item.id for item in listed.data] == [item.id for item in created.data]
    newest_first = oai.conversations.items.list(conversation.id)  # default order: desc
    assert [item.id for item in newest_first.data] == [item.id for item in reversed(created.data)]

    answer = oai.conversations.items.retrieve(created.data[1].id, conversation_id=conversation.id)
    assert answer.type == "message" and answer.role == "assistant"
    assert [(part.type, part.text, part.annotations) for part in answer.content] == [("output_text", "4", [])]
    question = oai.conversations.items.retrieve(created.data[0].id, conversation_id=conversation.id)
    assert [(part.type, part.text) for part in question.content] == [("input_text", "What is 2 + 2?")]

    after_delete = oai.conversations.items.delete(created.data[1].id, conversation_id=conversation.id)
    assert isinstance(after_delete, openai.types.conversations.Conversation)
    assert after_delete.id == conversation.id and after_delete.object == "conversation"
    with pytest.raises(openai.NotFoundError) as caught:
        oai.conversations.items.retrieve(created.data[1].id, conversation_id=conversation.id)
    assert caught.value.param == "item_id"
    remaining = oai.conversations.items.list(conversation.id, order="asc")
    assert [item.id for item in remaining.data] == [created.data[0].id, created.data[2].id]
    with pytest.raises(openai.NotFoundError):
        oai.conversations.items.delete(created.data[1].id, conversation_id=conversation.id)


def test_auto_paging_over_250_items(oai):
    conversation = oai.conversations.create()
    added: list[str] = []
    for start in range(0, 250, 20):  # 13 calls, the last with 10 items
        batch = oai.conversations.items.create(conversation.id, items=user_messages(start, min(20, 250 - start)))
        added += [item.id for item in batch.data]
    assert len(added) == 250 and len(set(added)) == 250

    def walk(**params) -> list[str]:
        page = oai.conversations.items.list(conversation.id, **params)
        return [item.id for item in page]  # iterating the page follows `after=<last_id>` to the end

    ascending = walk(limit=20, order="asc")
    assert ascending == added
    assert walk(limit=20, order="desc") == list(reversed(added))
    assert walk(limit=100, order="asc") == added
    assert walk(limit=100, order="desc") == list(reversed(added))

    # The pages themselves: full pages say there is more, the last one does not.
    pages = list(oai.conversations.items.list(conversation.id, limit=100, order="asc").iter_pages())
    assert [len(page.data) for page in pages] == [100, 100, 50]
    assert [page.has_more for page in pages] == [True, True, False]
    assert texts(pages[2].data)[-1] == "m249"


def test_include_is_accepted_on_create_list_and_retrieve(oai):
    conversation = oai.conversations.create()
    created = oai.conversations.items.create(
        conversation.id,
        include=INCLUDE,
        items=[{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi", "annotations": []}]}],
    )
    item_id = created.data[0].id
    listed = oai.conversations.items.list(conversation.id, include=INCLUDE)
    assert [item.id for item in listed.data] == [item_id]
    retrieved = oai.conversations.items.retrieve(item_id, conversation_id=conversation.id, include=INCLUDE)
    assert retrieved.id == item_id and retrieved.content[0].text == "Hi"


def test_errors_surface_as_typed_exceptions(oai, live_server):
    conversation = oai.conversations.create()

    with pytest.raises(openai.BadRequestError) as caught:
        oai.conversations.items.create(conversation.id, items=user_messages(0, 21))
    error = caught.value
    assert error.status_code == 400 and error.type == "invalid_request_error"
    assert error.param == "items" and error.code
    assert set(error.body) == {"message", "type", "param", "code"}
    assert error.request_id  # from X-Request-Id
    assert oai.conversations.items.list(conversation.id).data == []  # nothing of it was stored

    with pytest.raises(openai.BadRequestError) as caught:
        oai.conversations.create(items=user_messages(0, 21))
    assert caught.value.param == "items"

    with pytest.raises(openai.NotFoundError) as caught:
        oai.conversations.retrieve("conv_doesnotexist0000")
    assert caught.value.code == "conversation_not_found" and caught.value.param == "conversation_id"

    with pytest.raises(openai.NotFoundError):
        oai.conversations.items.create("conv_doesnotexist0000", items=user_messages(0, 1))

    # Another guest's conversation is as missing as an unknown one.
    with sdk(live_server) as stranger, pytest.raises(openai.NotFoundError):
        stranger.conversations.retrieve(conversation.id)

    with sdk(live_server, api_key="not-a-token") as anonymous, pytest.raises(openai.AuthenticationError) as caught:
        anonymous.conversations.retrieve(conversation.id)
    assert caught.value.status_code == 401 and caught.value.type == "authentication_error"
    assert caught.value.code == "invalid_token"


async def test_async_client_round_trip(live_server):
    token = guest_token(live_server.url)
    async with openai.AsyncOpenAI(
        base_url=f"{live_server.url}/v1",
        api_key=token,
        max_retries=0,
        _strict_response_validation=True,
    ) as client:
        conversation = await client.conversations.create(
            items=[{"role": "user", "content": "Hello from asyncio"}],
            metadata={"client": "async"},
        )
        assert conversation.id.startswith("conv_") and conversation.metadata == {"client": "async"}
        items = [item async for item in client.conversations.items.list(conversation.id, limit=1, order="asc")]
        assert [(item.role, item.content[0].type, item.content[0].text) for item in items] == [
            ("user", "input_text", "Hello from asyncio")
        ]
