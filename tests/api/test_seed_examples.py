"""The original service's documented curl examples, sent as written.

Each request uses the example's method, path, headers (``Authorization: Bearer <token>``, plus
``Content-Type: application/json`` when there is a body) and body text, with a real guest token and
real ids in place of ``conv_123``, ``proj_123`` and ``item_456``. The flow runs once as the service
is reached directly and once through a gateway that keeps the ``/llm`` prefix.
"""

from __future__ import annotations

import pytest

from tests.api.test_builtin_auth import TOKEN_FIELDS

CONVERSATION_KEYS = {
    "id",
    "object",
    "created_at",
    "updated_at",
    "metadata",
    "title",
    "project_id",
    "referrer",
    "is_archived",
    "archived_at",
}
PROJECT_KEYS = {"id", "object", "name", "instruction", "is_favorite", "is_archived", "archived_at", "created_at", "updated_at"}
ITEM_KEYS = {"id", "type", "status", "role", "content", "created_at"}
LIST_KEYS = {"object", "data", "first_id", "last_id", "has_more"}


class Curl:
    """curl -X <method> -H "Authorization: Bearer $TOKEN" [-H "Content-Type: application/json" -d '<body>']"""

    def __init__(self, client, prefix: str, token: str) -> None:
        self.client, self.prefix, self.token = client, prefix, token

    async def __call__(self, method: str, path: str, body: str | None = None, *, status: int = 200) -> dict:
        headers = {"Authorization": f"Bearer {self.token}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        response = await self.client.request(method, f"{self.prefix}{path}", data=body, headers=headers)
        assert response.status == status, f"{method} {path}: {await response.text()}"
        assert response.content_type == "application/json"
        return await response.json()


@pytest.fixture(params=["", "/llm"], ids=["direct", "llm-prefix"])
async def curl(request, client) -> Curl:
    prefix = request.param
    response = await client.post(f"{prefix}/auth/guest-login")
    assert response.status == 201, await response.text()
    tokens = await response.json()
    assert set(tokens) == TOKEN_FIELDS and tokens["token_type"] == "Bearer"
    return Curl(client, prefix, tokens["access_token"])


async def test_project_examples(curl):
    project = await curl(
        "POST", "/v1/projects", '{"name":"Marketing Campaign","instruction":"You are a marketing expert."}', status=201
    )
    assert set(project) == PROJECT_KEYS and project["object"] == "project"
    assert (project["name"], project["instruction"]) == ("Marketing Campaign", "You are a marketing expert.")
    project_id = project["id"]

    listed = await curl("GET", "/v1/projects")
    assert set(listed) == LIST_KEYS | {"total"} and listed["object"] == "list"
    assert [row["id"] for row in listed["data"]] == [project_id] and listed["total"] == 1

    assert await curl("GET", f"/v1/projects/{project_id}") == project

    updated = await curl(
        "PATCH",
        f"/v1/projects/{project_id}",
        '{"name":"Updated Project Name","instruction":"New instruction text","archived":false}',
    )
    assert set(updated) == PROJECT_KEYS
    assert (updated["id"], updated["name"], updated["instruction"]) == (
        project_id,
        "Updated Project Name",
        "New instruction text",
    )
    assert updated["is_archived"] is False and updated["archived_at"] is None

    deleted = await curl("DELETE", f"/v1/projects/{project_id}")
    assert deleted == {"id": project_id, "object": "project.deleted", "deleted": True}


async def test_conversation_examples(curl):
    project = await curl(
        "POST", "/v1/projects", '{"name":"Marketing Campaign","instruction":"You are a marketing expert."}', status=201
    )

    empty = await curl("GET", "/v1/conversations")
    assert empty == {"object": "list", "data": [], "first_id": "", "last_id": "", "has_more": False, "total": 0}

    conversation = await curl("POST", "/v1/conversations", f'{{"title": "My Conversation", "project_id": "{project["id"]}"}}')
    assert set(conversation) == CONVERSATION_KEYS and conversation["object"] == "conversation"
    assert (conversation["title"], conversation["project_id"]) == ("My Conversation", project["id"])
    conversation_id = conversation["id"]

    listed = await curl("GET", "/v1/conversations")
    assert set(listed) == LIST_KEYS | {"total"}
    assert listed["data"] == [conversation] and listed["total"] == 1

    assert await curl("GET", f"/v1/conversations/{conversation_id}") == conversation

    updated = await curl("POST", f"/v1/conversations/{conversation_id}", '{"title": "Updated Title"}')
    assert set(updated) == CONVERSATION_KEYS
    assert (updated["id"], updated["title"], updated["project_id"]) == (conversation_id, "Updated Title", project["id"])

    no_items = await curl("GET", f"/v1/conversations/{conversation_id}/items")
    assert no_items == {"object": "list", "data": [], "first_id": "", "last_id": "", "has_more": False}

    created = await curl(
        "POST",
        f"/v1/conversations/{conversation_id}/items",
        '{"items":[{"type":"message","role":"user","content":[{"type":"input_text","text":"Hello!"}]}]}',
    )
    assert set(created) == LIST_KEYS and created["has_more"] is False
    [item] = created["data"]
    assert set(item) == ITEM_KEYS and item["id"].startswith("msg_")
    assert (item["type"], item["role"], item["status"], item["content"]) == (
        "message",
        "user",
        "completed",
        [{"type": "input_text", "text": "Hello!"}],
    )
    assert (created["first_id"], created["last_id"]) == (item["id"], item["id"])

    items = await curl("GET", f"/v1/conversations/{conversation_id}/items")
    assert items == {"object": "list", "data": [item], "first_id": item["id"], "last_id": item["id"], "has_more": False}

    assert await curl("GET", f"/v1/conversations/{conversation_id}/items/{item['id']}") == item

    after_item_delete = await curl("DELETE", f"/v1/conversations/{conversation_id}/items/{item['id']}")
    assert set(after_item_delete) == CONVERSATION_KEYS
    assert (after_item_delete["id"], after_item_delete["title"]) == (conversation_id, "Updated Title")
    assert (await curl("GET", f"/v1/conversations/{conversation_id}/items"))["data"] == []

    deleted = await curl("DELETE", f"/v1/conversations/{conversation_id}")
    assert deleted == {"id": conversation_id, "object": "conversation.deleted", "deleted": True}
    assert (await curl("GET", "/v1/conversations"))["total"] == 0
