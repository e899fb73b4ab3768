"""Users, keyed by (issuer, subject): whoever a token or the gateway says the caller is."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from llm_api.db.pool import Database
from llm_api.db.sql import Query
from llm_api.db.tables import users

_new = insert(users).values(
    id=sa.bindparam("id"),
    issuer=sa.bindparam("issuer"),
    subject=sa.bindparam("subject"),
    username=sa.bindparam("username"),
    email=sa.bindparam("email"),
    name=sa.bindparam("name"),
    is_guest=sa.bindparam("is_guest"),
    created_at=sa.func.now(),
    last_seen_at=sa.func.now(),
)
_UPSERT = Query(
    _new.on_conflict_do_update(
        index_elements=[users.c.issuer, users.c.subject],
        # What the identity provider says now wins; a missing claim does not erase what is known.
        set_={
            "username": sa.func.coalesce(_new.excluded.username, users.c.username),
            "email": sa.func.coalesce(_new.excluded.email, users.c.email),
            "name": sa.func.coalesce(_new.excluded.name, users.c.name),
            "is_guest": _new.excluded.is_guest,
            "last_seen_at": sa.func.now(),
        },
    ).returning(users.c.id)
)
_GET = Query(sa.select(users).where(users.c.id == sa.bindparam("id")))


async def upsert_user(
    db: Database,
    *,
    new_id: str,
    issuer: str,
    subject: str,
    username: str | None,
    email: str | None,
    name: str | None,
    is_guest: bool,
) -> str:
    """The user's id: the existing one for a known (issuer, subject), else ``new_id``."""
    rows = await db.execute(
        _UPSERT, id=new_id, issuer=issuer, subject=subject, username=username, email=email, name=name, is_guest=is_guest
    )
    return rows[0]["id"]


async def get_user(db: Database, user_id: str) -> dict | None:
    return await db.fetch_one(_GET, id=user_id)
