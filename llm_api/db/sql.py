"""SQLAlchemy Core statements compiled once, offline, for aiopg.

aiopg's own SQLAlchemy integration is stuck on SQLAlchemy 1.x, so statements are built with
SQLAlchemy 2 Core, compiled with the psycopg2 dialect (pyformat parameters) and run on plain aiopg
cursors. Compiling costs about as much as the query itself, hence once per statement.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.dialects.postgresql import psycopg2
from sqlalchemy.sql import ClauseElement

DIALECT = psycopg2.dialect()


class Query:
    """A statement compiled once. Values are given by bind-parameter name at execution time.

    Only for statements whose SQL text does not depend on the values (no expanding ``IN``);
    use ``= ANY(:values)`` with an array instead.
    """

    __slots__ = ("sql", "_compiled", "_processors")

    def __init__(self, statement: ClauseElement) -> None:
        self._compiled = statement.compile(dialect=DIALECT)
        self.sql = str(self._compiled)
        # Bind processors turn Python values into what psycopg2 expects (JSONB -> JSON text ...).
        # The attribute is private but stable; aiopg's SQLAlchemy integration relies on it too.
        self._processors = self._compiled._bind_processors

    def parameters(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The parameter dict for psycopg2; raises if a required bind parameter has no value.

        Always a dict, even when empty: psycopg2 only un-escapes ``%%`` when parameters are given.
        """
        params = self._compiled.construct_params(values)
        processors = self._processors
        return {key: processors[key](value) if key in processors else value for key, value in params.items()}

    def __repr__(self) -> str:
        return f"Query({self.sql!r})"
