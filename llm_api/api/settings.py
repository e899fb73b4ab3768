"""The caller's settings."""

from __future__ import annotations

from aiohttp import web

from llm_api.app_keys import PRINCIPAL, USER_SETTINGS
from llm_api.schemas import models
from llm_api.schemas.values import unix
from llm_api.server.responses import json_response
from llm_api.server.validation import body_of
from llm_api.user_settings import SettingsRecord


async def get_user_settings(request: web.Request) -> web.Response:
    return json_response(_settings(await request.app[USER_SETTINGS].get(request[PRINCIPAL].user_id)))


async def update_user_settings(request: web.Request) -> web.Response:
    body = body_of(request, models.UserSettingsUpdateRequest)
    return json_response(_settings(await request.app[USER_SETTINGS].update(request[PRINCIPAL].user_id, body)))


def _settings(record: SettingsRecord) -> models.UserSettings:
    return models.UserSettings.model_validate(
        {
            "object": "user.settings",
            **record.settings,
            "created_at": unix(record.created_at),
            "updated_at": unix(record.updated_at),
        }
    )
