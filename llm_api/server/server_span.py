"""A SERVER span per request, continuing the caller's trace when it sends ``traceparent``.

Named ``<METHOD> <route template>`` (never the raw path: ids would make every name unique), with the
HTTP semantic-convention attributes and the final status. Every span the request makes — the chat
completion, the outbound calls to providers and to the media and memory services — is its child, so
one request is one trace from the caller to the provider.

Only installed when tracing is on: with tracing off it would cost a little on every request for
nothing.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from llm_api.server.access_log import CLIENT_CLOSED
from llm_api.server.operations import route_template


def server_span_middleware(tracer: trace.Tracer):
    @web.middleware
    async def server_span(request: web.Request, handler):
        route = route_template(request)
        attributes = {
            "http.request.method": request.method,
            "http.route": route,
            "url.path": request.path,
            "url.scheme": request.scheme,
            "server.address": request.host,
        }
        with tracer.start_as_current_span(
            f"{request.method} {route}",
            context=propagate.extract(request.headers),
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except asyncio.CancelledError:
                status = CLIENT_CLOSED
                raise
            finally:
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))

    return server_span
