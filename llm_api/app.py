"""``create_app(settings)``: the whole service as an aiohttp application.

Middlewares, outermost first (each sees what the next one returns or raises):

0. server span      (tracing on only) a SERVER span per request, continuing the caller's trace
1. access log       one line per request, with the final status and duration; the same in the metrics
2. request id       echo or make ``X-Request-Id``; the id tags every log line of the request
3. contract check   (strict mode only) every response must be one openapi.yaml documents
4. error rendering  every exception becomes the OpenAI error envelope
5. authentication   operations with a security requirement get a principal, or 401 (403 for admin-only)
6. rate limiting    per principal, or per client address when anonymous; 429 beyond the limit
7. validation       typed parameters and body from the generated models, or 400

Routes are bound from the operations of openapi.yaml (see ``server.routing``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from opentelemetry import trace

from llm_api import api
from llm_api.app_keys import (
    API_KEYS,
    AUTHENTICATOR,
    BUILD_INFO,
    CHAT,
    CONVERSATIONS,
    DATABASE,
    HTTP_CLIENT,
    IDENTITY,
    INSTALLATION,
    METRICS,
    PROJECTS,
    PROVIDERS,
    RATE_LIMITER,
    READINESS,
    SETTINGS,
    SPEC_DOCUMENT,
    STARTED_AT,
    STRICT_CONTRACT,
    TRACER_PROVIDER,
    USER_SETTINGS,
)
from llm_api.auth.api_keys import ApiKeys
from llm_api.auth.authenticator import Authenticator, IdentityProvider
from llm_api.auth.builtin_identity import BuiltInIdentity
from llm_api.auth.builtin_issuer import BuiltInIssuer
from llm_api.auth.keycloak import KeycloakClient
from llm_api.auth.keycloak_identity import KeycloakIdentity
from llm_api.auth.remote_jwks import RemoteJwks
from llm_api.auth.users import UserDirectory
from llm_api.build_info import build_info
from llm_api.chat.service import Chat
from llm_api.config import Settings
from llm_api.contract.spec import spec_bytes
from llm_api.conversations.projects import Projects
from llm_api.conversations.service import Conversations
from llm_api.crypto import Keyring
from llm_api.db.changes import ChangeFeed
from llm_api.db.lifecycle import open_database
from llm_api.db.service_state import load_installation
from llm_api.observability.metrics import Metrics
from llm_api.observability.tracing import client_trace_configs, shut_down, tracer_provider_for, tracing_enabled
from llm_api.providers.service import Providers
from llm_api.rate_limit import RateLimiter
from llm_api.readiness import Readiness
from llm_api.schemas.operations import OPERATIONS
from llm_api.server.access_log import access_log_middleware
from llm_api.server.authentication import add_principal_headers, authentication_middleware
from llm_api.server.error_rendering import error_middleware
from llm_api.server.rate_limiting import add_rate_limit_headers, rate_limit_middleware
from llm_api.server.request_id import add_request_id_header, request_id_middleware
from llm_api.server.routing import bind_routes, check_no_stray_routes
from llm_api.server.server_span import server_span_middleware
from llm_api.server.validation import validation_middleware
from llm_api.user_settings import UserSettings


def create_app(settings: Settings, *, tracer_provider: trace.TracerProvider | None = None) -> web.Application:
    """Build the application. The database is opened when the app starts, not here.

    ``tracer_provider`` replaces the one OTEL_* settings describe (tests pass one that records in memory).
    """
    if not settings.db_dsn:
        raise ValueError("create_app needs settings.db_dsn; `llm-api serve` starts an embedded PostgreSQL when none is set")
    if not settings.secret_key:
        raise ValueError("create_app needs settings.secret_key (LLM_API_SECRET_KEY)")
    provider = tracer_provider or tracer_provider_for(settings)
    middlewares = []
    if tracing_enabled(provider):
        middlewares.append(server_span_middleware(provider.get_tracer("llm_api.server")))
    middlewares += [access_log_middleware, request_id_middleware]
    if settings.strict_contract:
        middlewares.append(_contract_check_middleware())
    middlewares += [error_middleware, authentication_middleware, rate_limit_middleware, validation_middleware]

    app = web.Application(
        middlewares=middlewares,
        client_max_size=settings.max_request_body_bytes,
        handler_args={"max_field_size": settings.max_header_bytes, "max_line_size": settings.max_header_bytes},
    )
    app[SETTINGS] = settings
    app[BUILD_INFO] = build_info(settings)
    app[SPEC_DOCUMENT] = spec_bytes()
    if settings.strict_contract:
        from llm_api.contract.strict import StrictContract  # see _contract_check_middleware

        app[STRICT_CONTRACT] = StrictContract(app[SPEC_DOCUMENT])
    app[READINESS] = Readiness()
    app[METRICS] = Metrics(settings.prometheus_multiproc_dir)
    app[TRACER_PROVIDER] = provider
    if tracer_provider is None:  # ours to flush and close on shutdown
        app.on_cleanup.append(_flush_traces)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_change_feed)
    app.cleanup_ctx.append(_http_client)
    app.cleanup_ctx.append(_identity)
    app.cleanup_ctx.append(_providers)
    app.on_response_prepare.append(add_request_id_header)
    app.on_response_prepare.append(add_principal_headers)
    app.on_response_prepare.append(add_rate_limit_headers)

    bind_routes(app, OPERATIONS, api.handlers())
    check_no_stray_routes(app)
    return app


def _contract_check_middleware():
    # openapi-core, behind strict mode, is a fifth of a worker's memory: only strict mode imports it.
    from llm_api.server.contract_check import contract_check_middleware

    return contract_check_middleware


async def _flush_traces(app: web.Application) -> None:
    await asyncio.to_thread(shut_down, app[TRACER_PROVIDER])  # exporting blocks


async def _database(app: web.Application) -> AsyncIterator[None]:
    database = await open_database(app[SETTINGS])
    try:
        app[DATABASE] = database
        app[INSTALLATION] = await load_installation(database)
        app[READINESS].add("database", database.ping)
        app[CONVERSATIONS] = Conversations(database)
        app[PROJECTS] = Projects(database)
        app[STARTED_AT] = int(time.time())
        yield
    finally:
        await database.close()


async def _change_feed(app: web.Application) -> AsyncIterator[None]:
    """What other workers change, evicted from this one's caches (see ``db.changes``)."""
    changes = ChangeFeed(app[SETTINGS].db_dsn)
    listening = asyncio.create_task(changes.run())
    app[USER_SETTINGS] = UserSettings(app[DATABASE], changes)
    try:
        yield
    finally:
        await _stopped(listening)


async def _http_client(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession(trace_configs=client_trace_configs(app[TRACER_PROVIDER])) as session:
        app[HTTP_CLIENT] = session
        yield


async def _identity(app: web.Application) -> AsyncIterator[None]:
    settings, database = app[SETTINGS], app[DATABASE]
    keyring = Keyring(settings.secret_key)
    directory = UserDirectory(database)
    identity = await _identity_provider(app, keyring, directory)
    app[IDENTITY] = identity
    app[API_KEYS] = ApiKeys(database, keyring, settings)
    app[AUTHENTICATOR] = Authenticator(
        identity,
        app[API_KEYS],
        directory,
        admin_api_key=settings.admin_api_key,
        gateway_secret=settings.gateway_shared_secret,
    )
    if settings.rate_limit_per_minute <= 0:
        yield
        return
    limiter = app[RATE_LIMITER] = RateLimiter(database, settings.rate_limit_per_minute)
    settling = asyncio.create_task(limiter.run())
    try:
        yield
    finally:
        await _stopped(settling)


async def _providers(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    providers = Providers(app[DATABASE], Keyring(settings.secret_key), settings, app[HTTP_CLIENT])
    await providers.start()
    app[PROVIDERS] = providers
    app[CHAT] = Chat(
        providers,
        app[CONVERSATIONS],
        app[PROJECTS],
        app[USER_SETTINGS],
        settings,
        app[HTTP_CLIENT],
        app[TRACER_PROVIDER].get_tracer("llm_api.chat"),
        app[METRICS],
        check_chunks=settings.strict_contract,
    )
    refresher = asyncio.create_task(providers.run())
    try:
        yield
    finally:
        await _stopped(refresher)
        await app[CHAT].close()


async def _identity_provider(app: web.Application, keyring: Keyring, directory: UserDirectory) -> IdentityProvider:
    settings = app[SETTINGS]
    if settings.keycloak_mode:
        jwks = RemoteJwks(app[HTTP_CLIENT], settings.effective_jwks_url, refresh_interval=settings.jwks_refresh_interval)
        client = KeycloakClient(app[HTTP_CLIENT], settings) if settings.keycloak_base_url else None
        identity = KeycloakIdentity(client, jwks, directory, settings)
        app[READINESS].add("jwks", identity.ready)
        return identity
    issuer = BuiltInIssuer(
        app[DATABASE],
        keyring,
        issuer=settings.token_issuer,
        audience=settings.account,
        access_ttl=settings.access_token_ttl,
        rotation_after=settings.signing_key_rotation,
        leeway=settings.auth_clock_skew,
    )
    await issuer.start()
    return BuiltInIdentity(
        app[DATABASE],
        keyring,
        issuer,
        directory,
        refresh_ttl=settings.refresh_token_ttl,
        leeway=settings.auth_clock_skew,
        guest_role=settings.guest_role,
    )


async def _stopped(task: asyncio.Task) -> None:
    """Cancel a background task and wait until it has finished."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
