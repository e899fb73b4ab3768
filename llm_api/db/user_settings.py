"""The settings a user changed (sparse; defaults live in code)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, insert

from llm_api.db.changes import USER_SETTINGS, notify_query
from llm_api.db.pool import Database, Transaction
from llm_api.db.sql import Query
from llm_api.db.tables import user_settings

_GET = Query(sa.select(user_settings).where(user_settings.c.user_id == sa.bindparam("user_id")))
# Changing settings reads, merges and writes under a row lock, so concurrent changes all count.
_ENSURE = Query(
    insert(user_settings)
    .values(user_id=sa.bindparam("user_id"), settings=sa.text("'{}'::jsonb"), created_at=sa.func.now(), updated_at=sa.func.now())
    .on_conflict_do_nothing(index_elements=[user_settings.c.user_id])
)
_LOCK = Query(sa.select(user_settings).where(user_settings.c.user_id == sa.bindparam("user_id")).with_for_update())
_WRITE = Query(
    sa.update(user_settings)
    .where(user_settings.c.user_id == sa.bindparam("user_id"))
    .values(settings=sa.bindparam("settings", type_=JSONB), updated_at=sa.func.now())
    .returning(user_settings)
)
_ANNOUNCE = notify_query(USER_SETTINGS)


async def get(db: Database, user_id: str) -> dict | None:
    return await db.fetch_one(_GET, user_id=user_id)


async def lock(tx: Transaction, user_id: str) -> dict:
    """The user's row, created empty if needed, locked until the transaction ends."""
    await tx.execute(_ENSURE, user_id=user_id)
    return await tx.fetch_one(_LOCK, user_id=user_id)


async def write(tx: Transaction, user_id: str, settings: dict) -> dict:
    """Store the settings and announce the change to every worker (at commit)."""
    row = await tx.fetch_one(_WRITE, user_id=user_id, settings=settings)
    await tx.execute(_ANNOUNCE, key=user_id)
    return row
