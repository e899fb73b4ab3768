"""The built-in issuer's signing keys."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from llm_api.db.pool import Database, Transaction
from llm_api.db.sql import Query
from llm_api.db.tables import signing_keys

# Rotation happens under a transaction-scoped advisory lock, so two workers never rotate at once.
_ROTATION_LOCK = Query(sa.select(sa.func.pg_advisory_xact_lock(7_316_202_611_254_002)))
# Keys still worth knowing: the current one and those retired less than `keep` ago.
_PUBLISHED = Query(
    sa.select(signing_keys)
    .where(
        sa.or_(
            signing_keys.c.retired_at.is_(None),
            signing_keys.c.retired_at > sa.func.now() - sa.bindparam("keep", type_=sa.Interval),
        )
    )
    .order_by(signing_keys.c.created_at.desc())
)
_RETIRE_CURRENT = Query(sa.update(signing_keys).where(signing_keys.c.retired_at.is_(None)).values(retired_at=sa.func.now()))
_INSERT = Query(
    sa.insert(signing_keys)
    .values(
        kid=sa.bindparam("kid"),
        public_jwk=sa.bindparam("public_jwk"),
        private_key_sealed=sa.bindparam("private_key_sealed"),
        created_at=sa.func.now(),
    )
    .returning(signing_keys.c.created_at)
)


async def published_keys(db: Database, keep: timedelta) -> list[dict]:
    """Newest first; the first one without ``retired_at`` is the current signing key."""
    return await db.fetch_all(_PUBLISHED, keep=keep)


async def lock_for_rotation(tx: Transaction) -> None:
    await tx.fetch_one(_ROTATION_LOCK)


async def current_and_recent(tx: Transaction, keep: timedelta) -> list[dict]:
    return await tx.fetch_all(_PUBLISHED, keep=keep)


async def replace_current(tx: Transaction, *, kid: str, public_jwk: dict, private_key_sealed: bytes) -> None:
    """Retire the current key and make this one current."""
    await tx.execute(_RETIRE_CURRENT)
    await tx.execute(_INSERT, kid=kid, public_jwk=public_jwk, private_key_sealed=private_key_sealed)
