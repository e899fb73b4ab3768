"""Every request counted and timed in the app's metrics, by operation route and final status."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from llm_api.app_keys import METRICS
from llm_api.server.access_log import CLIENT_CLOSED
from llm_api.server.operations import operation_of


@web.middleware
async def request_metrics_middleware(request: web.Request, handler):
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
        operation = operation_of(request)
        request.app[METRICS].observe_request(
            request.method, operation.path if operation is not None else None, status, time.perf_counter() - started,
        )
