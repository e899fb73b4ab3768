"""Routes are bound from the contract, and start-up refuses any disagreement."""

from __future__ import annotations

import pytest
from aiohttp import web

from llm_api import api
from llm_api.app import create_app
from llm_api.app_keys import OPERATION_BY_ROUTE
from llm_api.schemas.operation import snake_case
from llm_api.schemas.operations import OPERATIONS
from llm_api.server.routing import RoutingError, bind_routes, check_no_stray_routes, handler_problems
from tests.conftest import test_settings


async def _handler(request):
    return web.Response()


def test_every_implemented_operation_has_its_handler():
    assert handler_problems(OPERATIONS, api.handlers()) == []
    implemented = {op.handler_name for op in OPERATIONS.values() if not op.planned}
    assert implemented == set(api.handlers())


def test_a_missing_handler_stops_start_up():
    handlers = api.handlers()
    del handlers["get_version"]
    with pytest.raises(RoutingError, match="getVersion has no handler get_version"):
        bind_routes(web.Application(), OPERATIONS, handlers)


def test_a_handler_without_an_operation_stops_start_up():
    with pytest.raises(RoutingError, match=r"handler get_weather\(\) matches no operation"):
        bind_routes(web.Application(), OPERATIONS, {**api.handlers(), "get_weather": _handler})


def test_a_planned_operation_with_a_handler_stops_start_up():
    with pytest.raises(RoutingError, match="getMetrics has a handler but is marked x-planned"):
        bind_routes(web.Application(), OPERATIONS, {**api.handlers(), "get_metrics": _handler})


def test_a_route_added_by_hand_stops_start_up():
    app = web.Application()
    bind_routes(app, OPERATIONS, api.handlers())
    app.router.add_get("/debug", _handler)
    with pytest.raises(RoutingError, match="GET /debug"):
        check_no_stray_routes(app)


def test_every_operation_is_served_under_both_prefixes():
    app = create_app(test_settings("dbname=unused"))
    served = {(route.method, route.resource.canonical) for route in app[OPERATION_BY_ROUTE]}
    for op in OPERATIONS.values():
        assert (op.method, op.path) in served
        assert (op.method, "/llm" + op.path) in served
    assert len(app[OPERATION_BY_ROUTE]) == 2 * len(OPERATIONS)


@pytest.mark.parametrize("camel,snake", [
    ("getHealth", "get_health"), ("createChatCompletion", "create_chat_completion"), ("getOpenApiDocument", "get_open_api_document"),
])
def test_handler_names_are_snake_case_operation_ids(camel, snake):
    assert snake_case(camel) == snake
