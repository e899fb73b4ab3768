"""Conversations and their items (the OpenAI Conversations API, plus a list of conversations)."""

from __future__ import annotations

from aiohttp import web

from llm_api.app_keys import CONVERSATIONS, PRINCIPAL
from llm_api.conversations.items import rendered
from llm_api.db.paging import Page
from llm_api.schemas import models
from llm_api.schemas.values import unix
from llm_api.server.responses import json_response
from llm_api.server.validation import body_of, params_of


async def create_conversation(request: web.Request) -> web.Response:
    body = body_of(request, models.ConversationCreateRequest)
    conversation = await request.app[CONVERSATIONS].create(request[PRINCIPAL].user_id, body)
    return json_response(_conversation(conversation))


async def list_conversations(request: web.Request) -> web.Response:
    params = params_of(request, models.ListConversationsParams)
    page, total = await request.app[CONVERSATIONS].page(request[PRINCIPAL].user_id, params)
    return json_response(
        models.ConversationList(
            object="list",
            data=[_conversation(row) for row in page.rows],
            has_more=page.has_more,
            total=total,
            first_id=page.first_id,
            last_id=page.last_id,
        )
    )


async def get_conversation(request: web.Request) -> web.Response:
    conversation_id = params_of(request, models.GetConversationParams).conversation_id
    return json_response(_conversation(await request.app[CONVERSATIONS].get(request[PRINCIPAL].user_id, conversation_id)))


async def update_conversation(request: web.Request) -> web.Response:
    conversation_id = params_of(request, models.UpdateConversationParams).conversation_id
    body = body_of(request, models.ConversationUpdateRequest)
    updated = await request.app[CONVERSATIONS].update(request[PRINCIPAL].user_id, conversation_id, body)
    return json_response(_conversation(updated))


async def delete_conversation(request: web.Request) -> web.Response:
    conversation_id = params_of(request, models.DeleteConversationParams).conversation_id
    await request.app[CONVERSATIONS].delete(request[PRINCIPAL].user_id, conversation_id)
    return json_response(models.ConversationDeleted(id=conversation_id, object="conversation.deleted", deleted=True))


async def list_conversation_items(request: web.Request) -> web.Response:
    params = params_of(request, models.ListConversationItemsParams)
    return json_response(_item_list(await request.app[CONVERSATIONS].page_items(request[PRINCIPAL].user_id, params)))


async def create_conversation_items(request: web.Request) -> web.Response:
    conversation_id = params_of(request, models.CreateConversationItemsParams).conversation_id
    body = body_of(request, models.ConversationItemsCreateRequest)
    rows = await request.app[CONVERSATIONS].add_items(request[PRINCIPAL].user_id, conversation_id, body.items)
    return json_response(_item_list(Page(rows, has_more=False)))  # the items just added, as one whole page


async def get_conversation_item(request: web.Request) -> web.Response:
    params = params_of(request, models.GetConversationItemParams)
    item = await request.app[CONVERSATIONS].get_item(request[PRINCIPAL].user_id, params.conversation_id, params.item_id)
    return json_response(rendered(item))


async def delete_conversation_item(request: web.Request) -> web.Response:
    params = params_of(request, models.DeleteConversationItemParams)
    conversation = await request.app[CONVERSATIONS].delete_item(
        request[PRINCIPAL].user_id, params.conversation_id, params.item_id
    )
    return json_response(_conversation(conversation))


def _conversation(row: dict) -> models.Conversation:
    return models.Conversation(
        id=row["id"],
        object="conversation",
        created_at=unix(row["created_at"]),
        updated_at=unix(row["updated_at"]),
        metadata=row["metadata"],
        title=row["title"],
        project_id=row["project_id"],
        referrer=row["referrer"],
        is_archived=row["archived_at"] is not None,
        archived_at=unix(row["archived_at"]),
    )


def _item_list(page: Page) -> models.ConversationItemList:
    return models.ConversationItemList(
        object="list",
        data=[rendered(row) for row in page.rows],
        has_more=page.has_more,
        first_id=page.first_id,
        last_id=page.last_id,
    )
