"""Guest login, tokens, the caller's identity, API keys, and the built-in issuer's public keys."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from pydantic import MISSING

from llm_api.app_keys import API_KEYS, IDENTITY, PRINCIPAL
from llm_api.auth.api_keys import status_of
from llm_api.auth.sessions import TokenSet
from llm_api.errors import Unauthorized
from llm_api.schemas import models
from llm_api.schemas.values import unix
from llm_api.server.responses import json_response
from llm_api.server.validation import body_of, params_of


async def guest_login(request: web.Request) -> web.Response:
    return json_response(_token_response(await request.app[IDENTITY].guest_login()), status=201)


async def refresh_token(request: web.Request) -> web.Response:
    token = _refresh_token_of(request, models.RefreshTokenRequest)
    if token is None:  # a refresh without its credential, like any call without credentials
        raise Unauthorized(
            'Send the refresh token in the body: {"refresh_token": "..."}.',
            code="missing_refresh_token",
        )
    return json_response(_token_response(await request.app[IDENTITY].refresh(token)))


async def logout(request: web.Request) -> web.Response:
    token = _refresh_token_of(request, models.LogoutRequest)
    if token is not None:
        await request.app[IDENTITY].logout(token)
    return json_response(models.LogoutResponse(object="logout", status="logged_out"))


async def get_current_principal(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    return json_response(
        models.Principal(
            id=principal.user_id,
            object="principal",
            subject=principal.subject,
            issuer=principal.issuer,
            username=principal.username,
            email=principal.email,
            name=principal.name,
            auth_method=principal.auth_method,
            roles=list(principal.roles),
            is_admin=principal.is_admin,
            is_guest=principal.is_guest,
        )
    )


async def create_api_key(request: web.Request) -> web.Response:
    body = body_of(request, models.ApiKeyCreateRequest)
    days = None if body.expires_in_days in (None, MISSING) else body.expires_in_days
    row, secret = await request.app[API_KEYS].create(request[PRINCIPAL].user_id, body.name, days)
    return json_response(models.ApiKeyWithSecret(**_api_key_fields(row), key=secret), status=201)


async def list_api_keys(request: web.Request) -> web.Response:
    rows = await request.app[API_KEYS].list(request[PRINCIPAL].user_id)
    return json_response(models.ApiKeyList(object="list", data=[models.ApiKey(**_api_key_fields(row)) for row in rows]))


async def delete_api_key(request: web.Request) -> web.Response:
    key_id = params_of(request, models.DeleteApiKeyParams).key_id
    await request.app[API_KEYS].revoke(request[PRINCIPAL].user_id, key_id)
    return web.Response(status=204)


async def get_jwks(request: web.Request) -> web.Response:
    return json_response(request.app[IDENTITY].jwks())


async def get_jwks_under_auth(request: web.Request) -> web.Response:
    return json_response(request.app[IDENTITY].jwks())


def _refresh_token_of(request: web.Request, body_model) -> str | None:
    body = body_of(request, body_model)
    return None if body is None or body.refresh_token is MISSING else body.refresh_token


def _token_response(tokens: TokenSet) -> models.TokenResponse:
    return models.TokenResponse(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        token_type="Bearer",
        expires_in=tokens.expires_in,
        expires_at=tokens.expires_at,
        refresh_expires_in=tokens.refresh_expires_in,
        user_id=tokens.user_id,
        username=tokens.username,
        principal_id=tokens.user_id,
    )


def _api_key_fields(row: dict) -> dict:
    return {
        "id": row["id"],
        "object": "api_key",
        "name": row["name"],
        "prefix": row["prefix"],
        "suffix": row["suffix"],
        "status": status_of(row, datetime.now(UTC)),
        "created_at": unix(row["created_at"]),
        "expires_at": unix(row["expires_at"]),
        "last_used_at": unix(row["last_used_at"]),
        "revoked_at": unix(row["revoked_at"]),
    }
