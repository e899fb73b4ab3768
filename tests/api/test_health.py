"""Health, readiness, version, the served contract and the docs page, under both prefixes."""

from __future__ import annotations

import re

import pytest

from llm_api.contract.spec import spec_bytes

PREFIXES = ["", "/llm"]


@pytest.mark.parametrize("path", ["/v1/healthz", "/healthz", "/llm/v1/healthz", "/llm/healthz"])
async def test_liveness_is_public_and_ok(client, path):
    response = await client.get(path)
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/v1/readyz", "/readyz", "/llm/v1/readyz"])
async def test_readiness_checks_the_database(client, path):
    response = await client.get(path)
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["database"]["duration_ms"] >= 0


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_version_reports_build_and_installation(client, prefix):
    response = await client.get(f"{prefix}/v1/version")
    assert response.status == 200
    body = await response.json()
    assert body["version"] == "0.1.0"
    assert re.fullmatch(r"inst_[0-9a-f]{16}", body["installation_id"])
    assert body["schema_version"] >= 1
    assert body["commit"] is None or re.fullmatch(r"[0-9a-f]{40}", body["commit"])


async def test_installation_id_is_stable_across_app_restarts(aiohttp_client, settings):
    from llm_api.app import create_app

    first = await (await (await aiohttp_client(create_app(settings))).get("/v1/version")).json()
    second = await (await (await aiohttp_client(create_app(settings))).get("/v1/version")).json()
    assert first["installation_id"] == second["installation_id"]


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_the_contract_is_served_byte_for_byte(client, prefix):
    response = await client.get(f"{prefix}/openapi.yaml")
    assert response.status == 200
    assert response.content_type == "text/yaml"
    assert await response.read() == spec_bytes()


async def test_docs_page_loads_the_contract_relative_to_itself(client):
    response = await client.get("/llm/docs")
    assert response.status == 200
    assert response.content_type == "text/html"
    page = await response.text()
    assert 'url: "openapi.yaml"' in page  # relative: /llm/docs loads /llm/openapi.yaml
    assert page.count('integrity="sha384-') == 2


async def test_request_id_is_echoed_or_made(client):
    echoed = await client.get("/v1/healthz", headers={"X-Request-Id": "trace-1.2:3_4"})
    assert echoed.headers["X-Request-Id"] == "trace-1.2:3_4"
    made = await client.get("/v1/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["X-Request-Id"])
    assert made.headers["X-Request-Id"] != (await client.get("/v1/healthz")).headers["X-Request-Id"]


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "semi;colon", "ünïcode"])
async def test_malformed_request_id_is_refused(client, bad):
    response = await client.get("/v1/healthz", headers={"X-Request-Id": bad.encode("utf-8").decode("latin-1")})
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["param"] == "X-Request-Id"
    assert error["code"] == "invalid_request_id"
    assert response.headers["X-Request-Id"] != bad  # a fresh, well-formed id replaces it
