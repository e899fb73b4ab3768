"""The installation's identity, written once by the first migration and read at start-up."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from llm_api.db.pool import Database
from llm_api.db.sql import Query
from llm_api.db.tables import schema_migrations, service_state

_INSTALLATION_ID = Query(sa.select(service_state.c.value).where(service_state.c.key == "installation_id"))
_SCHEMA_VERSION = Query(sa.select(sa.func.coalesce(sa.func.max(schema_migrations.c.version), 0).label("version")))


@dataclass(frozen=True)
class Installation:
    installation_id: str
    schema_version: int


async def load_installation(db: Database) -> Installation:
    row = await db.fetch_one(_INSTALLATION_ID)
    if row is None:
        raise RuntimeError("service_state has no installation_id: the database was not migrated")
    version = await db.fetch_one(_SCHEMA_VERSION)
    return Installation(installation_id=row["value"], schema_version=version["version"])
