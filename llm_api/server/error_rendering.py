"""Every failure becomes the OpenAI error envelope, here and nowhere else."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from llm_api.app_keys import REQUEST_ID, SETTINGS
from llm_api.errors import (
    ApiError,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    NotImplementedYet,
    PayloadTooLarge,
)
from llm_api.server.responses import error_response

log = logging.getLogger(__name__)


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except ApiError as error:
        if error.status >= 500 and not isinstance(error, NotImplementedYet):
            log.error("%s: %s", type(error).__name__, error.message, extra={"code": error.code})
        return error_response(error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(_from_http_exception(request, exc))
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error")
        return error_response(InternalError(f"Internal error (request id {request.get(REQUEST_ID)})."))


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> ApiError:
    """aiohttp's own answers (unknown path, wrong method, body over the limit) in our envelope."""
    if isinstance(exc, web.HTTPNotFound):
        return NotFound(f"Invalid URL ({request.method} {request.path}).", code="unknown_url")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return MethodNotAllowed(
            f"Method {request.method} is not allowed for {request.path}; allowed: {allowed}.",
            headers={"Allow": allowed},
        )
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        limit = request.app[SETTINGS].max_request_body_bytes
        return PayloadTooLarge(f"The request body exceeds the limit of {limit} bytes.")
    if exc.status < 500:
        return InvalidRequest(exc.reason, code=None)
    return InternalError(exc.reason)
