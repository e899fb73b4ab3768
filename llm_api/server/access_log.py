"""One log line per request (method, route, status, duration, request id, and who/what when known), and
the request counted and timed in the metrics (by operation route and final status, ``/metrics``)."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from llm_api.app_keys import LOG_FIELDS, METRICS, REQUEST_ID
from llm_api.server.operations import operation_of, route_template

log = logging.getLogger("llm_api.access")

# Status logged when the client went away before an answer was complete (nginx's convention).
CLIENT_CLOSED = 499
NOT_IMPLEMENTED = 501


@web.middleware
async def access_log_middleware(request: web.Request, handler):
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # only what the error renderer lets through (below 400)
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = CLIENT_CLOSED
        raise
    finally:
        seconds = time.perf_counter() - started
        operation = operation_of(request)
        request.app[METRICS].observe_request(
            request.method,
            operation.path if operation is not None else None,
            status,
            seconds,
        )
        duration_ms = round(seconds * 1000, 2)
        level = _level(status)
        log.log(
            level,
            "%s %s %d %.2fms",
            request.method,
            request.path,
            status,
            duration_ms,
            extra={
                "request_id": request.get(REQUEST_ID),
                "method": request.method,
                "route": route_template(request),
                "status": status,
                "duration_ms": duration_ms,
                **request.get(LOG_FIELDS, {}),  # the request's context is gone by now; its fields are not
            },
        )


def _level(status: int) -> int:
    # 501 marks a planned operation and 499 a client that left: neither is the server failing.
    if status >= 500 and status != NOT_IMPLEMENTED:
        return logging.ERROR
    return logging.WARNING if status >= 400 else logging.INFO
