"""Routes are bound from the contract, and start-up refuses any disagreement."""

from __future__ import annotations

import dataclasses

import pytest
from aiohttp import web

from llm_api import api
from llm_api.app import create_app
from llm_api.app_keys import OPERATION_BY_ROUTE
from llm_api.schemas.operation import snake_case
from llm_api.schemas.operations import OPERATIONS
from llm_api.server.error_rendering import error_middleware
from llm_api.server.routing import RoutingError, bind_routes, check_no_stray_routes, handler_problems
from tests.conftest import test_settings


async def _handler(request):
    return web.Response()


def _planned(operation_id: str) -> dict:
    """The operations with one of them marked ``x-planned`` (the contract may have none at the moment)."""
    return {**OPERATIONS, operation_id: dataclasses.replace(OPERATIONS[operation_id], planned=True)}


def _handlers_without(name: str) -> dict:
    handlers = api.handlers()
    del handlers[name]
    return handlers


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
    with pytest.raises(RoutingError, match="getVersion has a handler but is marked x-planned"):
        bind_routes(web.Application(), _planned("getVersion"), api.handlers())


@pytest.mark.parametrize("path", ["/v1/version", "/llm/v1/version"])
async def test_a_planned_operation_is_501_and_not_retried(aiohttp_client, path):
    app = web.Application(middlewares=[error_middleware])
    bind_routes(app, _planned("getVersion"), _handlers_without("get_version"))
    response = await (await aiohttp_client(app)).get(path)
    assert response.status == 501
    error = (await response.json())["error"]
    assert (error["type"], error["code"], error["param"]) == ("server_error", "not_implemented", None)
    assert "getVersion" in error["message"]
    assert response.headers["x-should-retry"] == "false"


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


@pytest.mark.parametrize(
    "camel,snake",
    [
        ("getHealth", "get_health"),
        ("createChatCompletion", "create_chat_completion"),
        ("getOpenApiDocument", "get_open_api_document"),
    ],
)
def test_handler_names_are_snake_case_operation_ids(camel, snake):
    assert snake_case(camel) == snake
