"""Routes come from the contract: one per operation, and again under the ``/llm`` prefix.

Start-up fails when an operation has no handler, when a handler matches no operation, when an
operation marked ``x-planned`` has a handler after all, or when a route was added by hand.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from llm_api.app_keys import OPERATION_BY_ROUTE
from llm_api.errors import NotImplementedYet
from llm_api.schemas.operation import Operation

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Kong forwards ``/llm/*`` with the prefix kept in some deployments; every route is served under both.
PREFIXES = ("", "/llm")


class RoutingError(RuntimeError):
    """The handlers and the contract disagree; the message lists every disagreement."""


def bind_routes(app: web.Application, operations: Mapping[str, Operation], handlers: Mapping[str, Handler]) -> None:
    """Add a route for every operation (under each prefix) to its handler, by the operationId's snake_case name."""
    problems = handler_problems(operations, handlers)
    if problems:
        raise RoutingError("; ".join(problems))
    by_route: dict[web.AbstractRoute, Operation] = {}
    # All unprefixed routes first, in document order, so that the methods of one path share one resource.
    for prefix in PREFIXES:
        for operation in operations.values():
            handler = handlers.get(operation.handler_name) or _not_implemented(operation)
            route = app.router.add_route(operation.method, prefix + _aiohttp_path(operation), handler)
            by_route[route] = operation
    app[OPERATION_BY_ROUTE] = by_route


def check_no_stray_routes(app: web.Application) -> None:
    """Every route of the app must serve an operation of the contract."""
    bound = app[OPERATION_BY_ROUTE]
    stray = [f"{route.method} {route.resource.canonical}" for route in app.router.routes() if route not in bound]
    if stray:
        raise RoutingError(f"routes without an operation in openapi.yaml: {', '.join(stray)}")


def handler_problems(operations: Mapping[str, Operation], handlers: Mapping[str, Handler]) -> list[str]:
    problems = []
    names = {operation.handler_name: operation for operation in operations.values()}
    for operation in operations.values():
        has_handler = operation.handler_name in handlers
        if not operation.planned and not has_handler:
            problems.append(f"operation {operation.operation_id} has no handler {operation.handler_name}()")
        if operation.planned and has_handler:
            problems.append(f"operation {operation.operation_id} has a handler but is marked x-planned in openapi.yaml")
    problems += [f"handler {name}() matches no operation in openapi.yaml" for name in handlers if name not in names]
    return problems


def _aiohttp_path(operation: Operation) -> str:
    path = operation.path
    for name in operation.slash_params:  # these may contain '/', so they take the rest of the path
        path = path.replace("{" + name + "}", "{" + name + ":.+}")
    return path


def _not_implemented(operation: Operation) -> Handler:
    async def not_implemented(request: web.Request) -> web.StreamResponse:
        raise NotImplementedYet(f"{operation.operation_id} is not implemented in this build yet.")

    return not_implemented
