"""User settings: the original's defaults, and changes merged field by field.

The original replaced a whole group when any field of it was sent (sending
``{"memory_config": {"max_user_items": 5}}`` reset the other memory fields); here only the fields
sent change. ``preferences`` keys are merged one level deep. ``nickname`` is accepted for
``nick_name``.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from llm_api.db import user_settings
from llm_api.db.changes import USER_SETTINGS as USER_SETTINGS_CHANNEL
from llm_api.db.changes import ChangeFeed
from llm_api.db.pool import Database
from llm_api.schemas import models

DEFAULTS: dict[str, Any] = {
    "memory_config": {
        "enabled": True,
        "observe_enabled": True,
        "inject_user_core": True,
        "inject_semantic": True,
        "inject_episodic": False,
        "max_user_items": 3,
        "max_project_items": 5,
        "max_episodic_items": 3,
        "min_similarity": 0.75,
    },
    "profile_settings": {
        "base_style": "Friendly",
        "custom_instructions": "",
        "nick_name": "",
        "occupation": "",
        "more_about_you": "",
    },
    "advanced_settings": {"web_search": False, "code_enabled": False},
    "enable_trace": False,
    "enable_tools": True,
    "preferences": {},
}
_GROUPS = ("memory_config", "profile_settings", "advanced_settings", "preferences")


@dataclass(frozen=True)
class SettingsRecord:
    settings: dict[str, Any]  # complete: defaults with the user's changes
    created_at: datetime | None
    updated_at: datetime | None


class UserSettings:
    """Every chat reads its caller's settings, so they are cached per worker; a change made through any
    worker or instance evicts them everywhere (``ChangeFeed``), and nothing is cached while the feed
    is not listening. Records are shared: callers must not change them.
    """

    def __init__(self, db: Database, changes: ChangeFeed, *, capacity: int = 10_000) -> None:
        self._db = db
        self._changes = changes
        self._capacity = capacity
        self._cached: OrderedDict[str, SettingsRecord] = OrderedDict()
        self._evictions = 0  # a read that saw an eviction happen meanwhile may be stale: not cached
        changes.subscribe(USER_SETTINGS_CHANNEL, self._evict)

    async def get(self, user_id: str) -> SettingsRecord:
        cached = self._cached.get(user_id) if self._changes.live else None
        if cached is not None:
            self._cached.move_to_end(user_id)
            return cached
        evictions = self._evictions
        row = await user_settings.get(self._db, user_id)
        record = _record(row) if row is not None else SettingsRecord(copy.deepcopy(DEFAULTS), None, None)
        if self._changes.live and evictions == self._evictions:
            self._cached[user_id] = record
            if len(self._cached) > self._capacity:
                self._cached.popitem(last=False)
        return record

    async def update(self, user_id: str, request: models.UserSettingsUpdateRequest) -> SettingsRecord:
        changes = _changes(request)
        async with self._db.transaction() as tx:
            row = await user_settings.lock(tx, user_id)
            row = await user_settings.write(tx, user_id, merge(row["settings"], changes))
        self._evict(user_id)  # at once here; the other workers hear of it from the feed
        return _record(row)

    def _evict(self, user_id: str | None) -> None:
        self._evictions += 1
        if user_id is None:
            self._cached.clear()
        else:
            self._cached.pop(user_id, None)


def merge(stored: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``stored`` with ``changes`` applied field by field (groups one level deep)."""
    merged = dict(stored)
    for key, value in changes.items():
        merged[key] = {**stored.get(key, {}), **value} if key in _GROUPS else value
    return merged


def _changes(request: models.UserSettingsUpdateRequest) -> dict[str, Any]:
    # Absent fields are left out of the dump (pydantic's MISSING), so this is exactly what was sent.
    changes = request.model_dump(mode="json")
    profile = changes.get("profile_settings")
    if profile is not None and "nickname" in profile:
        nickname = profile.pop("nickname")
        profile.setdefault("nick_name", nickname)
    return changes


def _record(row: dict) -> SettingsRecord:
    return SettingsRecord(merge(copy.deepcopy(DEFAULTS), row["settings"]), row["created_at"], row["updated_at"])
