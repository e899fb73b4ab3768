"""Liveness, readiness and build information. Public: probes and people need them without credentials."""

from __future__ import annotations

from aiohttp import web

from llm_api.app_keys import BUILD_INFO, INSTALLATION, READINESS, STARTED_AT
from llm_api.errors import ServiceUnavailable
from llm_api.schemas.models import HealthStatus, ReadinessCheck, ReadinessStatus, VersionInfo
from llm_api.server.responses import json_response

_ALIVE = HealthStatus(status="ok")


async def get_health(request: web.Request) -> web.Response:
    return json_response(_ALIVE)


async def get_health_root(request: web.Request) -> web.Response:
    return json_response(_ALIVE)


async def get_readiness(request: web.Request) -> web.Response:
    results = await request.app[READINESS].run()
    failed = next((result for result in results if result.error), None)
    if failed is not None:
        raise ServiceUnavailable(f"{failed.name}: {failed.error}", param=failed.name, code="not_ready")
    checks = {result.name: ReadinessCheck(status="ok", duration_ms=result.duration_ms) for result in results}
    return json_response(ReadinessStatus(status="ready", checks=checks))


async def get_readiness_root(request: web.Request) -> web.Response:
    return await get_readiness(request)


async def get_version(request: web.Request) -> web.Response:
    build, installation = request.app[BUILD_INFO], request.app[INSTALLATION]
    return json_response(
        VersionInfo(
            version=build.version,
            commit=build.commit,
            build_time=build.build_time,
            installation_id=installation.installation_id,
            started_at=request.app[STARTED_AT],
            schema_version=installation.schema_version,
        )
    )
