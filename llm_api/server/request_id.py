"""Request ids: echo a well-formed ``X-Request-Id`` or make one, and put it on every response.

The id, and the request's other log fields (see ``observability.logging``), tag every log line
written while the request is served.
"""

from __future__ import annotations

import re
import uuid

from aiohttp import web

from llm_api.app_keys import LOG_FIELDS, REQUEST_ID
from llm_api.errors import InvalidRequest
from llm_api.observability.logging import current_log_fields, current_request_id
from llm_api.server.responses import error_response

# Conservative on purpose: the id is echoed in a header and written to logs.
_WELL_FORMED = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@web.middleware
async def request_id_middleware(request: web.Request, handler):
    supplied = request.headers.get("X-Request-Id")
    well_formed = supplied is not None and _WELL_FORMED.fullmatch(supplied) is not None
    request[REQUEST_ID] = supplied if well_formed else uuid.uuid4().hex
    # A fresh dict per request: requests on one keep-alive connection share a task, not their fields.
    request[LOG_FIELDS] = {}
    if "conversation_id" in request.match_info:
        request[LOG_FIELDS]["conversation_id"] = request.match_info["conversation_id"]
    token = current_request_id.set(request[REQUEST_ID])
    fields_token = current_log_fields.set(request[LOG_FIELDS])
    try:
        if supplied is not None and not well_formed:
            return error_response(
                InvalidRequest(
                    "X-Request-Id must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_', ':' and '-'.",
                    param="X-Request-Id",
                    code="invalid_request_id",
                )
            )
        return await handler(request)
    finally:
        current_request_id.reset(token)
        current_log_fields.reset(fields_token)


async def add_request_id_header(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare hook: runs for streamed responses too, before their headers go out."""
    request_id = request.get(REQUEST_ID)
    if request_id is not None:
        response.headers["X-Request-Id"] = request_id
