"""Typed keys for application and request state (aiohttp warns on plain string keys)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from llm_api.auth.principal import Authenticator, Principal
    from llm_api.build_info import BuildInfo
    from llm_api.config import Settings
    from llm_api.contract.strict import StrictContract
    from llm_api.db.pool import Database
    from llm_api.db.service_state import Installation
    from llm_api.readiness import Readiness
    from llm_api.schemas.operation import Operation
    from llm_api.server.validation import OperationInput

SETTINGS = web.AppKey("settings", "Settings")
BUILD_INFO = web.AppKey("build_info", "BuildInfo")
DATABASE = web.AppKey("database", "Database")
INSTALLATION = web.AppKey("installation", "Installation")
READINESS = web.AppKey("readiness", "Readiness")
AUTHENTICATOR = web.AppKey("authenticator", "Authenticator")
#: The operation each bound route serves, keyed by the aiohttp route object.
OPERATION_BY_ROUTE = web.AppKey("operation_by_route", dict)
#: openapi-core checks, present only in strict mode.
STRICT_CONTRACT = web.AppKey("strict_contract", "StrictContract")
SPEC_DOCUMENT = web.AppKey("spec_document", bytes)
#: When this process started serving (Unix seconds).
STARTED_AT = web.AppKey("started_at", int)

REQUEST_ID = web.RequestKey("request_id", str)
OPERATION = web.RequestKey("operation", "Operation")
PRINCIPAL = web.RequestKey("principal", "Principal")
OPERATION_INPUT = web.RequestKey("operation_input", "OperationInput")
#: The request body as received, kept for the strict contract check.
RAW_BODY = web.RequestKey("raw_body", bytes)
