"""Which operation of the contract a request is for, and how the contract sees that request."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from llm_api.app_keys import OPERATION_BY_ROUTE
from llm_api.schemas.operation import Operation

if TYPE_CHECKING:
    from llm_api.contract.strict import ContractRequest


def operation_of(request: web.Request) -> Operation | None:
    """The operation of the matched route; None for unknown paths and wrong methods."""
    return request.app[OPERATION_BY_ROUTE].get(request.match_info.route)


def route_template(request: web.Request) -> str:
    """The matched route as written (``/v1/conversations/{conversation_id}``), or ``-``."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "-"


def request_view(request: web.Request, operation: Operation, *, body: bytes | None) -> ContractRequest:
    """The request as openapi-core sees it (strict mode)."""
    from llm_api.contract.strict import contract_request  # openapi-core costs 22 MB: imported in strict mode only

    return contract_request(
        operation,
        request.match_info,
        query=request.query,
        headers=request.headers,
        cookies=request.cookies,
        body=body,
        content_type=request.content_type,
    )
