"""Conversations and their items, always scoped to the conversation's user."""

from __future__ import annotations

import psycopg2.errors
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from llm_api.db.paging import Page, fetch_page, page_queries
from llm_api.db.pool import Database, Transaction
from llm_api.db.projects import archived_at, given, partial
from llm_api.db.sql import Query
from llm_api.db.tables import conversation_items as items
from llm_api.db.tables import conversations
from llm_api.errors import Conflict


def _user_scope(table: sa.Table) -> sa.ColumnElement:
    return table.c.user_id == sa.bindparam("user_id")


def _conversation_scope(table: sa.Table) -> sa.ColumnElement:
    return table.c.conversation_id == sa.bindparam("conversation_id")


_owned = _user_scope(conversations)
_this = sa.and_(_owned, conversations.c.id == sa.bindparam("id"))

_INSERT = Query(
    sa.insert(conversations)
    .values(
        id=sa.bindparam("id"),
        user_id=sa.bindparam("user_id"),
        project_id=sa.bindparam("project_id"),
        title=sa.bindparam("title"),
        metadata=sa.bindparam("metadata", type_=JSONB),
        referrer=sa.bindparam("referrer"),
        created_at=sa.func.now(),
        updated_at=sa.func.now(),
    )
    .returning(conversations)
)
_GET = Query(sa.select(conversations).where(_this))
_filters = (
    sa.or_(sa.bindparam("project_id", type_=sa.Text).is_(None), conversations.c.project_id == sa.bindparam("project_id")),
    sa.or_(sa.bindparam("referrer", type_=sa.Text).is_(None), conversations.c.referrer == sa.bindparam("referrer")),
)
_PAGES = {order: Query(q) for order, q in page_queries(conversations, _user_scope, *_filters).items()}
_COUNT = Query(sa.select(sa.func.count().label("total")).where(_owned, *_filters))
_UPDATABLE = ("title", "metadata", "project_id", "archived")
_UPDATE = Query(
    sa.update(conversations)
    .where(_this)
    .values(
        title=given("title", conversations.c.title),
        metadata=given("metadata", conversations.c.metadata),
        project_id=given("project_id", conversations.c.project_id),
        archived_at=archived_at(conversations.c.archived_at),
        updated_at=sa.func.now(),
    )
    .returning(conversations)
)
# Touching also gives an untitled conversation the title passed, if any.
_TOUCH = Query(
    sa.update(conversations)
    .where(_this)
    .values(
        updated_at=sa.func.now(),
        title=sa.func.coalesce(conversations.c.title, sa.bindparam("title", type_=sa.Text)),
    )
    .returning(conversations)
)
_DELETE = Query(sa.delete(conversations).where(_this).returning(conversations.c.id))

# Items: the conversation is checked for ownership by the caller before any of these run.
_in_conversation = _conversation_scope(items)
# All of a request's items in one statement, in the order given (their seq follows that order).
_INSERT_ITEMS = Query(
    sa.text("""
    INSERT INTO llm_api.conversation_items (id, conversation_id, type, role, status, body)
    SELECT r.id, :conversation_id, r.type, r.role, r.status, r.body
    FROM ROWS FROM (jsonb_to_recordset(:items) AS (id text, type text, role text, status text, body jsonb))
         WITH ORDINALITY AS r(id, type, role, status, body, position)
    ORDER BY r.position
    RETURNING seq, id, conversation_id, type, role, status, body, created_at
""").bindparams(sa.bindparam("items", type_=JSONB))
)
# A chat's exchange, stored in one statement (one round trip, atomic): the conversation touched (and
# titled if it has no title) and its items added, or nothing at all when the conversation is gone.
_RECORD_EXCHANGE = Query(
    sa.text("""
    WITH touched AS (
        UPDATE llm_api.conversations
        SET updated_at = now(), title = coalesce(title, CAST(:title AS text))
        WHERE user_id = :user_id AND id = :id
        RETURNING *
    ), stored AS (
        INSERT INTO llm_api.conversation_items (id, conversation_id, type, role, status, body)
        SELECT r.id, touched.id, r.type, r.role, r.status, r.body
        FROM touched,
             ROWS FROM (jsonb_to_recordset(:items) AS (id text, type text, role text, status text, body jsonb))
             WITH ORDINALITY AS r(id, type, role, status, body, position)
        ORDER BY r.position
        RETURNING seq
    )
    SELECT * FROM touched
""").bindparams(sa.bindparam("items", type_=JSONB))
)
_GET_ITEM = Query(sa.select(items).where(_in_conversation, items.c.id == sa.bindparam("id")))
_ITEM_PAGES = {order: Query(q) for order, q in page_queries(items, _conversation_scope).items()}
_DELETE_ITEM = Query(sa.delete(items).where(_in_conversation, items.c.id == sa.bindparam("id")).returning(items.c.id))


async def insert(
    tx: Transaction,
    *,
    conversation_id: str,
    user_id: str,
    project_id: str | None,
    title: str | None,
    metadata: dict,
    referrer: str | None,
) -> dict:
    return await tx.fetch_one(
        _INSERT, id=conversation_id, user_id=user_id, project_id=project_id, title=title, metadata=metadata, referrer=referrer
    )


async def get(db: Database, *, user_id: str, conversation_id: str) -> dict | None:
    return await db.fetch_one(_GET, user_id=user_id, id=conversation_id)


async def page(
    db: Database, *, user_id: str, project_id: str | None, referrer: str | None, after: str | None, order: str, limit: int
) -> tuple[Page, int]:
    """A page of the user's conversations (of one project, one referrer), and how many match in all."""
    filters = {"user_id": user_id, "project_id": project_id, "referrer": referrer}
    page = await fetch_page(db, _PAGES[order], after=after, limit=limit, **filters)
    return page, (await db.fetch_one(_COUNT, **filters))["total"]


async def update(db: Database, *, user_id: str, conversation_id: str, changes: dict) -> dict | None:
    rows = await db.execute(_UPDATE, user_id=user_id, id=conversation_id, **partial(changes, _UPDATABLE))
    return rows[0] if rows else None


async def touch(tx: Transaction | Database, *, user_id: str, conversation_id: str, title: str | None = None) -> dict | None:
    """Mark the conversation changed now (titled ``title`` if it has no title); the conversation, or
    None when there is no such one."""
    rows = await tx.fetch_all(_TOUCH, user_id=user_id, id=conversation_id, title=title)
    return rows[0] if rows else None


async def delete(db: Database, *, user_id: str, conversation_id: str) -> bool:
    """Delete the conversation and, with it, every item."""
    return bool(await db.execute(_DELETE, user_id=user_id, id=conversation_id))


async def insert_items(tx: Transaction, *, conversation_id: str, rows: list[dict]) -> list[dict]:
    """Insert items (id, type, role, status, body) in order; 409 when an id is already in the conversation."""
    try:
        inserted = await tx.fetch_all(_INSERT_ITEMS, conversation_id=conversation_id, items=rows)
    except psycopg2.errors.UniqueViolation:
        raise Conflict("An item with this id is already in the conversation.", param="items", code="duplicate_item_id") from None
    return sorted(inserted, key=lambda row: row["seq"])


async def record_exchange(
    db: Database, *, user_id: str, conversation_id: str, rows: list[dict], title: str | None
) -> dict | None:
    """Add a chat's items (new ids) and touch the conversation; the conversation, or None when it is gone."""
    stored = await db.execute(_RECORD_EXCHANGE, user_id=user_id, id=conversation_id, items=rows, title=title)
    return stored[0] if stored else None


async def get_item(db: Database, *, conversation_id: str, item_id: str) -> dict | None:
    return await db.fetch_one(_GET_ITEM, conversation_id=conversation_id, id=item_id)


async def page_items(db: Database, *, conversation_id: str, after: str | None, order: str, limit: int) -> Page:
    return await fetch_page(db, _ITEM_PAGES[order], conversation_id=conversation_id, after=after, limit=limit)


async def delete_item(db: Database, *, conversation_id: str, item_id: str) -> bool:
    return bool(await db.execute(_DELETE_ITEM, conversation_id=conversation_id, id=item_id))
