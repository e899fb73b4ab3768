"""Providers: rows for every source; the file and environment ones are re-written at start-up."""

from __future__ import annotations

import psycopg2.errors
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, insert

from llm_api.db.pool import Database, Transaction
from llm_api.db.projects import given, partial
from llm_api.db.sql import Query
from llm_api.db.tables import providers
from llm_api.errors import Conflict

_SOURCE_RANK = sa.case({"config_file": 0, "environment": 1}, value=providers.c.source, else_=2)
_ALL = Query(sa.select(providers).order_by(_SOURCE_RANK, providers.c.source_position, providers.c.seq))
_GET = Query(sa.select(providers).where(providers.c.id == sa.bindparam("id")))
# Configuration sources are applied under a lock, so workers starting together agree.
_LOCK = Query(sa.select(sa.func.pg_advisory_xact_lock(7_316_202_611_254_003)))

_values = dict(
    id=sa.bindparam("id"),
    name=sa.bindparam("name"),
    vendor=sa.bindparam("vendor"),
    base_url=sa.bindparam("base_url"),
    api_key_sealed=sa.bindparam("api_key_sealed", type_=sa.LargeBinary),
    api_key_hint=sa.bindparam("api_key_hint"),
    models=sa.bindparam("models", type_=JSONB),
    aliases=sa.bindparam("aliases", type_=JSONB),
    metadata=sa.bindparam("metadata", type_=JSONB),
    active=sa.bindparam("active"),
    source=sa.bindparam("source"),
    source_position=sa.bindparam("source_position"),
    created_at=sa.func.now(),
    updated_at=sa.func.now(),
)
_INSERT = Query(insert(providers).values(**_values).returning(providers))
_new = insert(providers).values(**_values)
# A configured provider's connection settings come from its source; whether it is active is the
# admin's to decide once it exists, so a restart does not undo a deactivation.
_UPSERT_CONFIGURED = Query(
    _new.on_conflict_do_update(
        index_elements=[providers.c.name],
        set_={
            name: getattr(_new.excluded, name)
            for name in (
                "vendor",
                "base_url",
                "api_key_sealed",
                "api_key_hint",
                "models",
                "aliases",
                "source",
                "source_position",
            )
        }
        | {"updated_at": sa.func.now()},
        where=providers.c.source != "api",
    ).returning(providers.c.id)
)
_DELETE_STALE_CONFIGURED = Query(
    sa.delete(providers).where(
        providers.c.source != "api",
        sa.not_(providers.c.name == sa.func.any(sa.bindparam("names", type_=sa.ARRAY(sa.Text)))),
    )
)
_UPDATABLE = ("name", "base_url", "api_key_sealed", "api_key_hint", "models", "aliases", "active", "metadata")
_UPDATE = Query(
    sa.update(providers)
    .where(providers.c.id == sa.bindparam("id"))
    .values(**{name: given(name, getattr(providers.c, name)) for name in _UPDATABLE}, updated_at=sa.func.now())
    .returning(providers)
)
_DELETE = Query(sa.delete(providers).where(providers.c.id == sa.bindparam("id")).returning(providers.c.id))
_SYNCED = Query(
    sa.update(providers)
    .where(providers.c.id == sa.bindparam("id"))
    .values(discovered_models=sa.bindparam("models", type_=JSONB), last_synced_at=sa.func.now())
)


async def all_providers(db: Database) -> list[dict]:
    """Every provider, in failover order."""
    return await db.fetch_all(_ALL)


async def get(db: Database, provider_id: str) -> dict | None:
    return await db.fetch_one(_GET, id=provider_id)


async def insert_provider(db: Database, **values) -> dict:
    try:
        return (await db.execute(_INSERT, **values))[0]
    except psycopg2.errors.UniqueViolation:
        raise duplicate_name(values["name"]) from None


async def apply_configured(tx: Transaction, rows: list[dict]) -> None:
    """Make the file and environment providers exactly ``rows`` (by name); API-made ones are kept."""
    await tx.fetch_one(_LOCK)
    for row in rows:
        if not await tx.fetch_all(_UPSERT_CONFIGURED, **row):
            raise Conflict(f'Provider "{row["name"]}" from {row["source"]} has the name of one made through the admin API.')
    await tx.execute(_DELETE_STALE_CONFIGURED, names=[row["name"] for row in rows])


async def lock(tx: Transaction) -> None:
    await tx.fetch_one(_LOCK)


async def update(db: Database, provider_id: str, changes: dict) -> dict | None:
    try:
        rows = await db.execute(_UPDATE, id=provider_id, **partial(changes, _UPDATABLE))
    except psycopg2.errors.UniqueViolation:
        raise duplicate_name(changes["name"]) from None
    return rows[0] if rows else None


async def delete(db: Database, provider_id: str) -> bool:
    return bool(await db.execute(_DELETE, id=provider_id))


async def record_models(db: Database, provider_id: str, models: list[str]) -> None:
    await db.execute(_SYNCED, id=provider_id, models=models)


def duplicate_name(name: str) -> Conflict:
    return Conflict(f'A provider named "{name}" already exists.', param="name", code="duplicate_name")
