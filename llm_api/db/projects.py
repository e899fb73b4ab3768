"""Projects, always scoped to their user; deleted ones are invisible."""

from __future__ import annotations

import psycopg2.errors
import sqlalchemy as sa

from llm_api.db.paging import Page, fetch_page, page_queries
from llm_api.db.pool import Database, Transaction
from llm_api.db.sql import Query
from llm_api.db.tables import conversations, projects
from llm_api.errors import Conflict

_owned = sa.and_(projects.c.user_id == sa.bindparam("user_id"), projects.c.deleted_at.is_(None))
_INSERT = Query(
    sa.insert(projects)
    .values(
        id=sa.bindparam("id"),
        user_id=sa.bindparam("user_id"),
        name=sa.bindparam("name"),
        instruction=sa.bindparam("instruction"),
        is_favorite=sa.bindparam("is_favorite"),
        created_at=sa.func.now(),
        updated_at=sa.func.now(),
    )
    .returning(projects)
)
_GET = Query(sa.select(projects).where(_owned, projects.c.id == sa.bindparam("id")))
_PAGES = {
    order: Query(q)
    for order, q in page_queries(
        projects, lambda table: sa.and_(table.c.user_id == sa.bindparam("user_id"), table.c.deleted_at.is_(None))
    ).items()
}
_COUNT = Query(sa.select(sa.func.count().label("total")).where(_owned))


def given(name: str, column: sa.Column):
    """``column`` set to the ``name`` parameter when ``set_<name>`` is true, else left as it is:
    one fixed statement serves every partial update."""
    return sa.case((sa.bindparam(f"set_{name}", type_=sa.Boolean), sa.bindparam(name, type_=column.type)), else_=column)


def archived_at(column: sa.Column):
    """Archiving keeps the first archiving time; unarchiving clears it; absent leaves it."""
    return sa.case(
        (
            sa.bindparam("set_archived", type_=sa.Boolean),
            sa.case((sa.bindparam("archived", type_=sa.Boolean), sa.func.coalesce(column, sa.func.now())), else_=None),
        ),
        else_=column,
    )


_UPDATE = Query(
    sa.update(projects)
    .where(_owned, projects.c.id == sa.bindparam("id"))
    .values(
        name=given("name", projects.c.name),
        instruction=given("instruction", projects.c.instruction),
        is_favorite=given("is_favorite", projects.c.is_favorite),
        archived_at=archived_at(projects.c.archived_at),
        updated_at=sa.func.now(),
    )
    .returning(projects)
)
_UPDATABLE = ("name", "instruction", "is_favorite", "archived")
_DELETE = Query(
    sa.update(projects)
    .where(_owned, projects.c.id == sa.bindparam("id"))
    .values(deleted_at=sa.func.now())
    .returning(projects.c.id)
)
_DETACH = Query(sa.update(conversations).where(conversations.c.project_id == sa.bindparam("id")).values(project_id=None))


async def insert(db: Database, *, project_id: str, user_id: str, name: str, instruction: str | None, is_favorite: bool) -> dict:
    try:
        return (
            await db.execute(_INSERT, id=project_id, user_id=user_id, name=name, instruction=instruction, is_favorite=is_favorite)
        )[0]
    except psycopg2.errors.UniqueViolation:
        raise _duplicate(name) from None


async def get(db: Database, *, user_id: str, project_id: str) -> dict | None:
    return await db.fetch_one(_GET, user_id=user_id, id=project_id)


async def page(db: Database, *, user_id: str, after: str | None, order: str, limit: int) -> tuple[Page, int]:
    """A page of the user's projects, and how many they have in all."""
    page = await fetch_page(db, _PAGES[order], user_id=user_id, after=after, limit=limit)
    total = (await db.fetch_one(_COUNT, user_id=user_id))["total"]
    return page, total


async def update(db: Database, *, user_id: str, project_id: str, changes: dict) -> dict | None:
    """Apply ``changes`` (any of name, instruction, is_favorite, archived); None when there is no such project."""
    try:
        rows = await db.execute(_UPDATE, user_id=user_id, id=project_id, **partial(changes, _UPDATABLE))
    except psycopg2.errors.UniqueViolation:
        raise _duplicate(changes["name"]) from None
    return rows[0] if rows else None


async def delete(tx: Transaction, *, user_id: str, project_id: str) -> bool:
    """Soft-delete the project and detach its conversations; False when there is no such project."""
    if not await tx.fetch_all(_DELETE, user_id=user_id, id=project_id):
        return False
    await tx.execute(_DETACH, id=project_id)
    return True


def partial(changes: dict, fields: tuple[str, ...]) -> dict:
    """The parameters of a ``given()`` update: each field's value and whether to set it."""
    values = {}
    for field in fields:
        values[f"set_{field}"] = field in changes
        values[field] = changes.get(field)
    return values


def _duplicate(name: str) -> Conflict:
    return Conflict(f'A project named "{name}" already exists.', param="name", code="duplicate_name")
