"""API keys, by keyed hash, always scoped to their user."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from llm_api.db.pool import Database, Transaction
from llm_api.db.sql import Query
from llm_api.db.tables import api_keys, users

_PUBLIC_COLUMNS = (
    api_keys.c.id,
    api_keys.c.name,
    api_keys.c.prefix,
    api_keys.c.suffix,
    api_keys.c.created_at,
    api_keys.c.expires_at,
    api_keys.c.last_used_at,
    api_keys.c.revoked_at,
)
# Serialises key creation per user, so that the cap holds under concurrent requests.
_LOCK_USER = Query(sa.select(users.c.id).where(users.c.id == sa.bindparam("user_id")).with_for_update())
_COUNT_ACTIVE = Query(
    sa.select(sa.func.count().label("active")).where(
        api_keys.c.user_id == sa.bindparam("user_id"),
        api_keys.c.revoked_at.is_(None),
        sa.or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > sa.func.now()),
    )
)
_INSERT = Query(
    sa.insert(api_keys)
    .values(
        id=sa.bindparam("id"),
        user_id=sa.bindparam("user_id"),
        name=sa.bindparam("name"),
        key_hash=sa.bindparam("key_hash"),
        prefix=sa.bindparam("prefix"),
        suffix=sa.bindparam("suffix"),
        created_at=sa.func.now(),
        expires_at=sa.func.now() + sa.bindparam("ttl", type_=sa.Interval),
    )
    .returning(*_PUBLIC_COLUMNS)
)
_LIST = Query(
    sa.select(*_PUBLIC_COLUMNS)
    .where(api_keys.c.user_id == sa.bindparam("user_id"))
    .order_by(api_keys.c.created_at.desc(), api_keys.c.id.desc())
)
_REVOKE = Query(
    sa.update(api_keys)
    .where(api_keys.c.id == sa.bindparam("id"), api_keys.c.user_id == sa.bindparam("user_id"))
    .values(revoked_at=sa.func.coalesce(api_keys.c.revoked_at, sa.func.now()))
    .returning(api_keys.c.id)
)
_BY_HASH = Query(
    sa.select(
        api_keys.c.id,
        api_keys.c.user_id,
        api_keys.c.key_hash,
        api_keys.c.revoked_at,
        (api_keys.c.expires_at <= sa.func.now()).label("expired"),
        users.c.issuer,
        users.c.subject,
        users.c.username,
        users.c.email,
        users.c.name,
        users.c.is_guest,
    )
    .join(users, users.c.id == api_keys.c.user_id)
    .where(api_keys.c.key_hash == sa.bindparam("key_hash"))
)
# last_used_at at minute resolution: a write per minute per key, not one per request.
_TOUCH = Query(
    sa.update(api_keys)
    .where(
        api_keys.c.id == sa.bindparam("id"),
        sa.or_(api_keys.c.last_used_at.is_(None), api_keys.c.last_used_at < sa.func.now() - sa.text("interval '1 minute'")),
    )
    .values(last_used_at=sa.func.now())
)


async def lock_user(tx: Transaction, user_id: str) -> None:
    await tx.fetch_one(_LOCK_USER, user_id=user_id)


async def count_active(tx: Transaction, user_id: str) -> int:
    return (await tx.fetch_one(_COUNT_ACTIVE, user_id=user_id))["active"]


async def insert(
    tx: Transaction, *, key_id: str, user_id: str, name: str, key_hash: bytes, prefix: str, suffix: str, ttl: timedelta
) -> dict:
    return await tx.fetch_one(
        _INSERT, id=key_id, user_id=user_id, name=name, key_hash=key_hash, prefix=prefix, suffix=suffix, ttl=ttl
    )


async def list_for_user(db: Database, user_id: str) -> list[dict]:
    return await db.fetch_all(_LIST, user_id=user_id)


async def revoke(db: Database, *, key_id: str, user_id: str) -> bool:
    """Revoke one of the user's keys; False when the user has no such key."""
    return bool(await db.execute(_REVOKE, id=key_id, user_id=user_id))


async def find_by_hash(db: Database, key_hash: bytes) -> dict | None:
    return await db.fetch_one(_BY_HASH, key_hash=key_hash)


async def touch(db: Database, key_id: str) -> None:
    await db.execute(_TOUCH, id=key_id)
