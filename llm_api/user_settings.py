"""User settings: the original's defaults, and changes merged field by field.

The original replaced a whole group when any field of it was sent (sending
``{"memory_config": {"max_user_items": 5}}`` reset the other memory fields); here only the fields
sent change. ``preferences`` keys are merged one level deep. ``nickname`` is accepted for
``nick_name``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from llm_api.db import user_settings
from llm_api.db.pool import Database
from llm_api.schemas import models

DEFAULTS: dict[str, Any] = {
    "memory_config": {
        "enabled": True, "observe_enabled": True, "inject_user_core": True, "inject_semantic": True,
        "inject_episodic": False, "max_user_items": 3, "max_project_items": 5, "max_episodic_items": 3,
        "min_similarity": 0.75,
    },
    "profile_settings": {
        "base_style": "Friendly", "custom_instructions": "", "nick_name": "", "occupation": "", "more_about_you": "",
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
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, user_id: str) -> SettingsRecord:
        row = await user_settings.get(self._db, user_id)
        return _record(row) if row is not None else SettingsRecord(copy.deepcopy(DEFAULTS), None, None)

    async def update(self, user_id: str, request: models.UserSettingsUpdateRequest) -> SettingsRecord:
        changes = _changes(request)
        async with self._db.transaction() as tx:
            row = await user_settings.lock(tx, user_id)
            row = await user_settings.write(tx, user_id, merge(row["settings"], changes))
        return _record(row)


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
