"""``create_app(settings)``: the whole service as an aiohttp application.

Middlewares, outermost first (each sees what the next one returns or raises):

1. access log       one line per request, with the final status and duration
2. request id       echo or make ``X-Request-Id``; the id tags every log line of the request
3. contract check   (strict mode only) every response must be one openapi.yaml documents
4. error rendering  every exception becomes the OpenAI error envelope
5. authentication   operations with a security requirement get a principal, or 401
6. validation       typed parameters and body from the generated models, or 400

Routes are bound from the operations of openapi.yaml (see ``server.routing``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from aiohttp import web

from llm_api import api
from llm_api.app_keys import (
    AUTHENTICATOR, BUILD_INFO, DATABASE, INSTALLATION, READINESS, SETTINGS, SPEC_DOCUMENT, STARTED_AT,
    STRICT_CONTRACT,
)
from llm_api.auth.principal import RejectAll
from llm_api.build_info import build_info
from llm_api.config import Settings
from llm_api.contract.spec import spec_bytes
from llm_api.contract.strict import StrictContract
from llm_api.db.lifecycle import open_database
from llm_api.db.service_state import load_installation
from llm_api.readiness import Readiness
from llm_api.schemas.operations import OPERATIONS
from llm_api.server.access_log import access_log_middleware
from llm_api.server.authentication import authentication_middleware
from llm_api.server.contract_check import contract_check_middleware
from llm_api.server.error_rendering import error_middleware
from llm_api.server.request_id import add_request_id_header, request_id_middleware
from llm_api.server.routing import bind_routes, check_no_stray_routes
from llm_api.server.validation import validation_middleware


def create_app(settings: Settings) -> web.Application:
    """Build the application. The database is opened when the app starts, not here."""
    if not settings.db_dsn:
        raise ValueError("create_app needs settings.db_dsn; `llm-api serve` starts an embedded PostgreSQL when none is set")
    middlewares = [access_log_middleware, request_id_middleware]
    if settings.strict_contract:
        middlewares.append(contract_check_middleware)
    middlewares += [error_middleware, authentication_middleware, validation_middleware]

    app = web.Application(middlewares=middlewares, client_max_size=settings.max_request_body_bytes)
    app[SETTINGS] = settings
    app[BUILD_INFO] = build_info(settings)
    app[SPEC_DOCUMENT] = spec_bytes()
    if settings.strict_contract:
        app[STRICT_CONTRACT] = StrictContract(app[SPEC_DOCUMENT])
    app[AUTHENTICATOR] = RejectAll()
    app[READINESS] = Readiness()
    app.cleanup_ctx.append(_database)
    app.on_response_prepare.append(add_request_id_header)

    bind_routes(app, OPERATIONS, api.handlers())
    check_no_stray_routes(app)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    database = await open_database(app[SETTINGS])
    try:
        app[DATABASE] = database
        app[INSTALLATION] = await load_installation(database)
        app[READINESS].add("database", database.ping)
        app[STARTED_AT] = int(time.time())
        yield
    finally:
        await database.close()
