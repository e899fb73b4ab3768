"""Typed keys for application and request state (aiohttp warns on plain string keys)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    import aiohttp
    from opentelemetry.trace import TracerProvider

    from llm_api.auth.api_keys import ApiKeys
    from llm_api.auth.authenticator import Authenticator, IdentityProvider
    from llm_api.auth.principal import Principal
    from llm_api.build_info import BuildInfo
    from llm_api.chat.service import Chat
    from llm_api.config import Settings
    from llm_api.contract.strict import StrictContract
    from llm_api.conversations.projects import Projects
    from llm_api.conversations.service import Conversations
    from llm_api.db.pool import Database
    from llm_api.db.service_state import Installation
    from llm_api.observability.metrics import Metrics
    from llm_api.providers.service import Providers
    from llm_api.rate_limit import RateDecision, RateLimiter
    from llm_api.readiness import Readiness
    from llm_api.schemas.operation import Operation, OperationInput
    from llm_api.user_settings import UserSettings

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
BUILD_INFO: web.AppKey[BuildInfo] = web.AppKey("build_info")
DATABASE: web.AppKey[Database] = web.AppKey("database")
INSTALLATION: web.AppKey[Installation] = web.AppKey("installation")
READINESS: web.AppKey[Readiness] = web.AppKey("readiness")
AUTHENTICATOR: web.AppKey[Authenticator] = web.AppKey("authenticator")
IDENTITY: web.AppKey[IdentityProvider] = web.AppKey("identity")
API_KEYS: web.AppKey[ApiKeys] = web.AppKey("api_keys")
RATE_LIMITER: web.AppKey[RateLimiter] = web.AppKey("rate_limiter")
CONVERSATIONS: web.AppKey[Conversations] = web.AppKey("conversations")
PROJECTS: web.AppKey[Projects] = web.AppKey("projects")
USER_SETTINGS: web.AppKey[UserSettings] = web.AppKey("user_settings")
PROVIDERS: web.AppKey[Providers] = web.AppKey("providers")
CHAT: web.AppKey[Chat] = web.AppKey("chat")
TRACER_PROVIDER: web.AppKey[TracerProvider] = web.AppKey("tracer_provider")
#: This app's Prometheus metrics (its own registry; with several workers, their shared directory).
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
#: The one outbound HTTP session (connection pooling, keep-alive) for identity providers and upstreams.
HTTP_CLIENT: web.AppKey[aiohttp.ClientSession] = web.AppKey("http_client")
#: The operation each bound route serves, keyed by the aiohttp route object.
OPERATION_BY_ROUTE: web.AppKey[dict[web.AbstractRoute, Operation]] = web.AppKey("operation_by_route")
#: openapi-core checks, present only in strict mode.
STRICT_CONTRACT: web.AppKey[StrictContract] = web.AppKey("strict_contract")
SPEC_DOCUMENT: web.AppKey[bytes] = web.AppKey("spec_document")
#: When this process started serving (Unix seconds).
STARTED_AT: web.AppKey[int] = web.AppKey("started_at")

REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id")
LOG_FIELDS: web.RequestKey[dict[str, str]] = web.RequestKey("log_fields")  # principal_id, conversation_id, model
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal")
OPERATION_INPUT: web.RequestKey[OperationInput] = web.RequestKey("operation_input")
RATE_DECISION: web.RequestKey[RateDecision] = web.RequestKey("rate_decision")
