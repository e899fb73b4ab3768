"""Per-minute limits per principal (per client address for anonymous calls); health is exempt."""

from __future__ import annotations

from aiohttp import web

from llm_api.app_keys import AUTHENTICATOR, PRINCIPAL, RATE_DECISION, RATE_LIMITER
from llm_api.errors import RateLimited
from llm_api.server.operations import operation_of


@web.middleware
async def rate_limit_middleware(request: web.Request, handler):
    operation = operation_of(request)
    if operation is not None and operation.rate_limited:
        principal = request.get(PRINCIPAL)
        await charge(request, f"user:{principal.user_id}" if principal is not None else anonymous_key(request))
    return await handler(request)


async def charge(request: web.Request, key: str) -> None:
    """Count one request against ``key``; raise RateLimited once its budget is spent."""
    limiter = request.app.get(RATE_LIMITER)
    if limiter is None:
        return
    decision = await limiter.hit(key)
    if decision is None:
        return
    request[RATE_DECISION] = decision
    if not decision.allowed:
        raise RateLimited(
            f"Rate limit of {decision.limit} requests per minute exceeded; retry in {decision.retry_after} s.",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(decision.retry_after)},
        )


def anonymous_key(request: web.Request) -> str:
    return f"ip:{_client_address(request)}"


def _client_address(request: web.Request) -> str:
    # X-Forwarded-For is only believed from the gateway: anyone else could send any address. And only
    # its last entry, the address the gateway saw: the ones before it are whatever the client sent.
    forwarded = request.headers.get("X-Forwarded-For")
    if forwarded and request.app[AUTHENTICATOR].came_through_gateway(request.headers):
        return forwarded.split(",")[-1].strip()
    return request.remote or "unknown"


async def add_rate_limit_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare hook: the caller's budget, on every rate-limited answer."""
    decision = request.get(RATE_DECISION)
    if decision is not None:
        response.headers["X-RateLimit-Limit-Minute"] = str(decision.limit)
        response.headers["X-RateLimit-Remaining-Minute"] = str(max(decision.remaining, 0))
