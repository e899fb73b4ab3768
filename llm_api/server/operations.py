"""Which operation of the contract a request is for."""

from __future__ import annotations

from aiohttp import web

from llm_api.app_keys import OPERATION_BY_ROUTE
from llm_api.schemas.operation import Operation


def operation_of(request: web.Request) -> Operation | None:
    """The operation of the matched route; None for unknown paths and wrong methods."""
    return request.app[OPERATION_BY_ROUTE].get(request.match_info.route)


def route_template(request: web.Request) -> str:
    """The matched route as written (``/v1/conversations/{conversation_id}``), or ``-``."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "-"
