"""Refresh tokens of the built-in issuer, by keyed hash."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from llm_api.db.pool import Database, Transaction
from llm_api.db.sql import Query
from llm_api.db.tables import refresh_tokens

_INSERT = Query(
    sa.insert(refresh_tokens)
    .values(
        token_hash=sa.bindparam("token_hash"),
        family=sa.bindparam("family"),
        user_id=sa.bindparam("user_id"),
        created_at=sa.func.now(),
        expires_at=sa.func.now() + sa.bindparam("ttl", type_=sa.Interval),
    )
    .returning(refresh_tokens.c.expires_at)
)
# Spending is one statement, so two concurrent refreshes with the same token cannot both succeed.
_SPEND = Query(
    sa.update(refresh_tokens)
    .where(
        refresh_tokens.c.token_hash == sa.bindparam("token_hash"),
        refresh_tokens.c.used_at.is_(None),
        refresh_tokens.c.revoked_at.is_(None),
        refresh_tokens.c.expires_at > sa.func.now(),
    )
    .values(used_at=sa.func.now())
    .returning(refresh_tokens.c.user_id, refresh_tokens.c.family)
)
_FIND = Query(sa.select(refresh_tokens).where(refresh_tokens.c.token_hash == sa.bindparam("token_hash")))
_REVOKE_FAMILY = Query(
    sa.update(refresh_tokens)
    .where(refresh_tokens.c.family == sa.bindparam("family"), refresh_tokens.c.revoked_at.is_(None))
    .values(revoked_at=sa.func.now())
)


async def insert(tx: Transaction | Database, *, token_hash: bytes, family: str, user_id: str, ttl: timedelta) -> None:
    await tx.execute(_INSERT, token_hash=token_hash, family=family, user_id=user_id, ttl=ttl)


async def spend(tx: Transaction, token_hash: bytes) -> dict | None:
    """Mark a live token used; its user and family, or None when it is unknown, spent, revoked or expired."""
    return await tx.fetch_one(_SPEND, token_hash=token_hash)


async def find(db: Database, token_hash: bytes) -> dict | None:
    return await db.fetch_one(_FIND, token_hash=token_hash)


async def revoke_family(db: Database, family: str) -> None:
    await db.execute(_REVOKE_FAMILY, family=family)
