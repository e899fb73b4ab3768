"""Keyset paging on a table's `seq`: one sort key, one cursor, stable while rows are added.

The cursor is a public id; its `seq` is looked up in a subquery restricted to the same owner, so
a cursor that is unknown (or belongs to someone else) yields an empty page rather than someone
else's position.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa


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
