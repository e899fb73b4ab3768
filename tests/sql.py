"""Looking at (and arranging) the database directly from tests, on a connection of their own."""

from __future__ import annotations

import psycopg2
from psycopg2.extras import RealDictCursor


def query(dsn: str, statement: str, *params: object) -> list[tuple]:
    """Run one statement (autocommit); its rows, or [] when it returns none."""
    return _run(dsn, statement, params, cursor_factory=None)


def query_dicts(dsn: str, statement: str, *params: object) -> list[dict]:
    """As ``query``, with each row as a dict by column name."""
    return _run(dsn, statement, params, cursor_factory=RealDictCursor)


def _run(dsn: str, statement: str, params: tuple, cursor_factory) -> list:
    conn = psycopg2.connect(dsn)
    try:
        conn.autocommit = True
        with conn.cursor(cursor_factory=cursor_factory) as cur:
            cur.execute(statement, params or None)  # None: a literal % needs no escaping then
            return cur.fetchall() if cur.description is not None else []
    finally:
        conn.close()
