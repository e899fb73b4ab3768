"""Conversations and items of one user: ownership checks, paging, and what changes on each write.

Another user's conversation, item or project behaves exactly like a missing one (404).
"""

from __future__ import annotations

from typing import Any

from pydantic import MISSING

from llm_api.conversations.items import InputItem, stored
from llm_api.db import conversations, projects
from llm_api.db.paging import Page
from llm_api.db.pool import Database
from llm_api.errors import NotFound
from llm_api.ids import new_id
from llm_api.schemas import models
from llm_api.schemas.values import first_given, given


class Conversations:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, user_id: str, request: models.ConversationCreateRequest | None) -> dict:
        request = request or models.ConversationCreateRequest()
        project_id = await self._owned_project(user_id, given(request.project_id))
        rows = [stored(item) for item in given(request.items) or []]
        async with self._db.transaction() as tx:
            conversation = await conversations.insert(
                tx,
                conversation_id=new_id("conv"),
                user_id=user_id,
                project_id=project_id,
                title=_title(request.title),
                metadata=_metadata(request.metadata),
                referrer=given(request.referrer),
            )
            if rows:
                await conversations.insert_items(tx, conversation_id=conversation["id"], rows=rows)
        return conversation

    async def get(self, user_id: str, conversation_id: str) -> dict:
        conversation = await conversations.get(self._db, user_id=user_id, conversation_id=conversation_id)
        if conversation is None:
            raise _missing_conversation(conversation_id)
        return conversation

    async def page(self, user_id: str, params: models.ListConversationsParams) -> tuple[Page, int]:
        """A page of the user's conversations, and how many match in all."""
        return await conversations.page(
            self._db,
            user_id=user_id,
            project_id=given(params.project_id),
            referrer=given(params.referrer),
            after=given(params.after),
            order=params.order,
            limit=params.limit,
        )

    async def update(self, user_id: str, conversation_id: str, request: models.ConversationUpdateRequest) -> dict:
        changes: dict[str, Any] = {}
        if request.title is not MISSING:
            changes["title"] = _title(request.title)
        if request.metadata is not MISSING:
            changes["metadata"] = _metadata(request.metadata)
        if request.project_id is not MISSING:
            changes["project_id"] = await self._owned_project(user_id, given(request.project_id))
        archived = first_given(request.is_archived, request.archived)
        if archived is not None:
            changes["archived"] = archived
        updated = await conversations.update(self._db, user_id=user_id, conversation_id=conversation_id, changes=changes)
        if updated is None:
            raise _missing_conversation(conversation_id)
        return updated

    async def delete(self, user_id: str, conversation_id: str) -> None:
        if not await conversations.delete(self._db, user_id=user_id, conversation_id=conversation_id):
            raise _missing_conversation(conversation_id)

    async def add_items(self, user_id: str, conversation_id: str, items: list[InputItem]) -> list[dict]:
        rows = [stored(item) for item in items]
        async with self._db.transaction() as tx:
            # Touching first checks ownership and orders concurrent writers to one conversation.
            if await conversations.touch(tx, user_id=user_id, conversation_id=conversation_id) is None:
                raise _missing_conversation(conversation_id)
            return await conversations.insert_items(tx, conversation_id=conversation_id, rows=rows)

    async def record_exchange(self, user_id: str, conversation_id: str, rows: list[dict], title: str | None) -> dict | None:
        """Store an exchange's items (already in stored form); give the conversation ``title`` if it has
        none. The conversation, or None when it was deleted while the answer was being written."""
        return await conversations.record_exchange(
            self._db,
            user_id=user_id,
            conversation_id=conversation_id,
            rows=rows,
            title=title,
        )

    async def page_items(self, user_id: str, params: models.ListConversationItemsParams) -> Page:
        await self.get(user_id, params.conversation_id)
        return await conversations.page_items(
            self._db,
            conversation_id=params.conversation_id,
            after=given(params.after),
            order=params.order,
            limit=params.limit,
        )

    async def get_item(self, user_id: str, conversation_id: str, item_id: str) -> dict:
        await self.get(user_id, conversation_id)
        item = await conversations.get_item(self._db, conversation_id=conversation_id, item_id=item_id)
        if item is None:
            raise _missing_item(item_id)
        return item

    async def delete_item(self, user_id: str, conversation_id: str, item_id: str) -> dict:
        """Delete the item; the conversation (as the OpenAI API answers)."""
        await self.get(user_id, conversation_id)
        if not await conversations.delete_item(self._db, conversation_id=conversation_id, item_id=item_id):
            raise _missing_item(item_id)
        return await conversations.touch(self._db, user_id=user_id, conversation_id=conversation_id) or await self.get(
            user_id, conversation_id
        )

    async def _owned_project(self, user_id: str, project_id: str | None) -> str | None:
        if project_id is not None and await projects.get(self._db, user_id=user_id, project_id=project_id) is None:
            raise NotFound(f"Project {project_id} not found.", param="project_id", code="project_not_found")
        return project_id


def _title(title) -> str | None:
    """Blank titles are no title."""
    title = given(title)
    return title if title and title.strip() else None


def _metadata(metadata) -> dict:
    metadata = given(metadata)
    return dict(metadata) if metadata is not None else {}


def _missing_conversation(conversation_id: str) -> NotFound:
    return NotFound(f"Conversation {conversation_id} not found.", param="conversation_id", code="conversation_not_found")


def _missing_item(item_id: str) -> NotFound:
    return NotFound(f"Item {item_id} not found.", param="item_id", code="item_not_found")
