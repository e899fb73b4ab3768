"""Every operation with a security requirement needs a principal before it runs.

The request's own credential is verified when it has one; identity headers from the gateway count
only when the request carries the gateway's shared secret and no credential of its own. Admin-only
operations answer 403 to everyone else. Authenticated answers say who was recognised, and how.
"""

from __future__ import annotations

from aiohttp import web

from llm_api.app_keys import AUTHENTICATOR, PRINCIPAL, SETTINGS
from llm_api.auth.principal import Principal, extract_credentials
from llm_api.errors import Forbidden, Unauthorized
from llm_api.observability.logging import bind_log_fields
from llm_api.server.operations import operation_of
from llm_api.server.rate_limiting import anonymous_key, charge


@web.middleware
async def authentication_middleware(request: web.Request, handler):
    operation = operation_of(request)
    if operation is None or not operation.secured:
        return await handler(request)
    try:
        principal = await _principal(request)
    except Unauthorized:
        # A failed attempt counts against the caller's address: guessing keys or tokens is throttled.
        await charge(request, anonymous_key(request))
        raise
    request[PRINCIPAL] = principal
    bind_log_fields(principal_id=principal.user_id)
    if operation.admin_only and not principal.is_admin:
        raise Forbidden("This operation requires the admin role.", code="admin_required")
    return await handler(request)


async def _principal(request: web.Request) -> Principal:
    authenticator = request.app[AUTHENTICATOR]
    credentials = extract_credentials(request.headers)
    if credentials is not None:
        return await authenticator.authenticate(credentials)
    if authenticator.came_through_gateway(request.headers) and request.headers.get("X-User-Subject", "").strip():
        return await authenticator.from_gateway(request.headers, default_issuer=request.app[SETTINGS].token_issuer)
    raise Unauthorized(
        "Missing credentials: send 'Authorization: Bearer <token>' or 'X-API-Key: sk_...'.",
        code="missing_credentials",
        headers={"WWW-Authenticate": 'Bearer realm="llm-api"'},
    )


async def add_principal_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare hook: who answered was recognised as (also on errors and streams)."""
    principal = request.get(PRINCIPAL)
    if principal is not None:
        response.headers["X-Auth-Method"] = principal.auth_method
        response.headers["X-Principal-Id"] = principal.user_id
