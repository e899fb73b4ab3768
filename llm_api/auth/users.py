"""From a verified identity to our user id, without a database round trip on every request."""

from __future__ import annotations

import time
from collections import OrderedDict

from llm_api.auth.tokens import Identity
from llm_api.db import users
from llm_api.db.pool import Database
from llm_api.ids import new_id


class UserDirectory:
    """Upserts users keyed by (issuer, subject), remembering recent ones.

    A remembered identity is re-written at most every ``refresh_after`` seconds (to keep
    ``last_seen_at`` and profile fields current) or as soon as what the token says changes.
    """

    def __init__(self, db: Database, *, refresh_after: float = 300.0, capacity: int = 10_000) -> None:
        self._db = db
        self._refresh_after = refresh_after
        self._capacity = capacity
        self._known: OrderedDict[tuple[str, str], tuple[str, Identity, float]] = OrderedDict()

    async def register(self, identity: Identity) -> str:
        key = (identity.issuer, identity.subject)
        known = self._known.get(key)
        if known is not None and known[1] == identity and time.monotonic() - known[2] < self._refresh_after:
            self._known.move_to_end(key)
            return known[0]
        user_id = await users.upsert_user(
            self._db,
            new_id=new_id("usr"),
            issuer=identity.issuer,
            subject=identity.subject,
            username=identity.username,
            email=identity.email,
            name=identity.name,
            is_guest=identity.is_guest,
        )
        self._known[key] = (user_id, identity, time.monotonic())
        self._known.move_to_end(key)
        if len(self._known) > self._capacity:
            self._known.popitem(last=False)
        return user_id
