"""A page of rows: keyset paging on a table's `seq`, one sort key, one cursor, stable while rows are added.

The cursor is a public id; its `seq` is looked up in a subquery restricted to the same owner, so
a cursor that is unknown (or belongs to someone else) yields an empty page rather than someone
else's position. Every list of the API (conversations, their items, projects) is read as a ``Page``
by ``fetch_page``, and rendered from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from llm_api.db.pool import Database
from llm_api.db.sql import Query


@dataclass(frozen=True, slots=True)
class Page:
    """At most a page size of rows, in order, and whether more follow them."""

    rows: list[dict[str, Any]]
    has_more: bool

    @property
    def first_id(self) -> str:
        """The first row's id; an empty string on an empty page (the OpenAI SDK refuses null there)."""
        return self.rows[0]["id"] if self.rows else ""

    @property
    def last_id(self) -> str:
        """The last row's id (the next page's ``after``); an empty string on an empty page."""
        return self.rows[-1]["id"] if self.rows else ""


async def fetch_page(db: Database, query: Query, *, limit: int, **values: Any) -> Page:
    """``limit`` rows of ``query`` (one of ``page_queries``); it reads one more to know whether more follow."""
    rows = await db.fetch_all(query, limit=limit + 1, **values)
    return Page(rows[:limit], has_more=len(rows) > limit)


def page_queries(table: sa.Table, scope: Callable[[sa.FromClause], sa.ColumnElement], *filters: sa.ColumnElement):
    """SELECT statements for ``order`` asc and desc: ``limit`` rows after the ``after`` id (optional).

    ``scope(t)`` restricts a table (or its alias) to the owner's rows, for the page and the cursor.
    """
    after = sa.bindparam("after", type_=sa.Text)
    cursor_row = table.alias("cursor_row")
    cursor = sa.select(cursor_row.c.seq).where(scope(cursor_row), cursor_row.c.id == after).scalar_subquery()
    scope = scope(table)
    queries = {}
    for order in ("asc", "desc"):
        past_cursor = table.c.seq > cursor if order == "asc" else table.c.seq < cursor
        queries[order] = (
            sa.select(table)
            .where(scope, *filters, sa.or_(after.is_(None), past_cursor))
            .order_by(table.c.seq.asc() if order == "asc" else table.c.seq.desc())
            .limit(sa.bindparam("limit"))
        )
    return queries
