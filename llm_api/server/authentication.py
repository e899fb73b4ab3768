"""Every operation with a security requirement needs a principal before it runs."""

from __future__ import annotations

from aiohttp import web

from llm_api.app_keys import AUTHENTICATOR, PRINCIPAL
from llm_api.auth.principal import extract_credentials
from llm_api.errors import Unauthorized
from llm_api.server.operations import operation_of


@web.middleware
async def authentication_middleware(request: web.Request, handler):
    operation = operation_of(request)
    if operation is None or not operation.secured:
        return await handler(request)
    credentials = extract_credentials(request.headers)
    if credentials is None:
        raise Unauthorized(
            "Missing credentials: send 'Authorization: Bearer <token>' or 'X-API-Key: sk_...'.",
            code="missing_credentials", headers={"WWW-Authenticate": 'Bearer realm="llm-api"'},
        )
    request[PRINCIPAL] = await request.app[AUTHENTICATOR].authenticate(credentials)
    return await handler(request)
