"""Every failure reaches the client as the OpenAI envelope with the right status."""

from __future__ import annotations

import pytest

ENVELOPE_KEYS = {"message", "type", "param", "code"}


async def error_of(response, status: int) -> dict:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == ENVELOPE_KEYS
    return body["error"]


@pytest.mark.parametrize("path", ["/nope", "/v1", "/v1/healthz/extra", "/llm/nope", "/llmv1/healthz"])
async def test_unknown_path_is_404(client, path):
    error = await error_of(await client.get(path), 404)
    assert error["code"] == "unknown_url"
    assert path in error["message"]


async def test_wrong_method_is_405_with_allow(client):
    response = await client.delete("/v1/healthz")
    error = await error_of(response, 405)
    assert response.headers["Allow"] == "GET"
    assert error["code"] == "method_not_allowed"


async def test_wrong_method_lists_every_allowed_method(client):
    response = await client.put("/v1/conversations")
    await error_of(response, 405)
    assert set(response.headers["Allow"].split(", ")) == {"GET", "POST"}


async def test_head_is_not_an_operation(client):
    response = await client.head("/v1/healthz")
    assert response.status == 405


# A planned operation's 501 (x-planned): tests/test_routing.py, as the contract may have none at the moment.


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/v1/models"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/conversations"),
        ("GET", "/llm/v1/users/me/settings"),
        ("GET", "/auth/me"),
        ("DELETE", "/v1/admin/providers/prov_abc"),
    ],
)
async def test_secured_operation_without_credentials_is_401(client, method, path):
    response = await client.request(method, path)
    error = await error_of(response, 401)
    assert error["type"] == "authentication_error"
    assert error["code"] == "missing_credentials"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "headers,code",
    [
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "invalid_authorization_header"),
        ({"Authorization": "Bearer"}, "invalid_authorization_header"),
        ({"Authorization": "Bearer not-a-token"}, "invalid_token"),
        ({"X-API-Key": "sk_unknown"}, "invalid_api_key"),
    ],
)
async def test_unverifiable_credentials_are_401(client, headers, code):
    error = await error_of(await client.get("/v1/models", headers=headers), 401)
    assert error["code"] == code


async def test_slash_in_model_id_routes_to_the_catalog(client):
    # Both spellings reach getModelCatalog (which then asks for credentials), not a 404.
    for path in ["/v1/models/catalogs/openai/gpt-4o-mini", "/v1/models/catalogs/openai%2Fgpt-4o-mini"]:
        await error_of(await client.get(path), 401)


# --- request bodies, on a public operation that takes one (refreshToken) --------------------------


async def test_malformed_json_is_400_naming_the_body(client):
    response = await client.post("/auth/refresh-token", data=b'{"refresh_token": ', headers={"Content-Type": "application/json"})
    error = await error_of(response, 400)
    assert error["param"] == "body"
    assert error["code"] == "invalid_json"


async def test_wrong_type_is_400_naming_the_field(client):
    error = await error_of(await client.post("/auth/refresh-token", json={"refresh_token": 123}), 400)
    assert error["param"] == "refresh_token"
    assert error["code"] == "invalid_value"


async def test_unknown_field_is_400_naming_it(client):
    error = await error_of(await client.post("/auth/refresh-token", json={"refresh_token": "rt_1", "extra": 1}), 400)
    assert error["param"] == "extra"
    assert error["code"] == "unknown_parameter"


async def test_wrong_content_type_is_400(client):
    response = await client.post("/auth/refresh-token", data=b'{"refresh_token": "rt_1"}', headers={"Content-Type": "text/plain"})
    error = await error_of(response, 400)
    assert error["param"] == "Content-Type"
    assert error["code"] == "invalid_content_type"


async def test_non_utf8_body_is_400(client):
    response = await client.post(
        "/auth/refresh-token", data=b'{"refresh_token": "\xff\xfe"}', headers={"Content-Type": "application/json"}
    )
    error = await error_of(response, 400)
    assert error["code"] == "invalid_encoding"


@pytest.mark.parametrize("body", [b'{"refresh_token": NaN}', b'{"refresh_token": "x", "a": Infinity}', b"[NaN]"])
async def test_non_finite_numbers_are_400(client, body):
    error = await error_of(await client.post("/auth/refresh-token", data=body, headers={"Content-Type": "application/json"}), 400)
    assert error["code"] == "invalid_json"


async def test_json_that_is_not_an_object_is_400(client):
    error = await error_of(await client.post("/auth/refresh-token", json=["refresh_token"]), 400)
    assert error["param"] == "body"


async def test_lone_surrogate_is_400(client):
    response = await client.post(
        "/auth/refresh-token", data=b'{"refresh_token": "\\ud800"}', headers={"Content-Type": "application/json"}
    )
    error = await error_of(response, 400)
    assert error["code"] == "invalid_json"


async def test_optional_body_may_be_absent(client):
    # refreshToken's body is optional (the token may be in a cookie): without either it is a 401, not a 400.
    error = await error_of(await client.post("/auth/refresh-token"), 401)
    assert error["code"] == "missing_refresh_token"


async def test_body_over_the_limit_is_413(aiohttp_client, database_dsn):
    from llm_api.app import create_app
    from tests.conftest import test_settings

    small = await aiohttp_client(create_app(test_settings(database_dsn, MAX_REQUEST_BODY_BYTES=2048)))
    response = await small.post("/auth/refresh-token", json={"refresh_token": "x" * 4096})
    error = await error_of(response, 413)
    assert "2048" in error["message"]


async def test_an_integral_float_is_an_integer_as_json_schema_says(client):
    token = (await (await client.post("/auth/guest-login")).json())["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    created = await client.post("/auth/api-keys", json={"name": "float days", "expires_in_days": 30.0}, headers=auth)
    assert created.status == 201, await created.text()
    error = await error_of(await client.post("/auth/api-keys", json={"name": "x", "expires_in_days": 30.5}, headers=auth), 400)
    assert error["param"] == "expires_in_days"
    error = await error_of(await client.post("/auth/api-keys", json={"name": "x", "expires_in_days": "30"}, headers=auth), 400)
    assert error["param"] == "expires_in_days"


async def test_query_integers_are_read_as_the_spec_reads_them(client):
    token = (await (await client.post("/auth/guest-login")).json())["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    for bad in ("5.0", "abc", "0", "101"):
        error = await error_of(await client.get(f"/v1/conversations?limit={bad}", headers=auth), 400)
        assert error["param"] == "limit", bad
    response = await client.get("/v1/conversations?limit=5", headers=auth)
    assert response.status == 200


@pytest.mark.parametrize(
    "body,param",
    [
        ({"model": "m", "messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),  # outside an enum
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": "2"}, "n"),  # wrong type
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "max"}, "reasoning_effort"),
    ],
)
async def test_chat_bodies_are_validated_over_http_naming_the_field(client, body, param):
    tokens = await (await client.post("/auth/guest-login")).json()
    response = await client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {tokens['access_token']}"})
    error = await error_of(response, 400)
    assert (error["param"], error["type"]) == (param, "invalid_request_error")


async def test_an_enum_query_parameter_names_itself(client):
    tokens = await (await client.post("/auth/guest-login")).json()
    response = await client.get("/v1/conversations?order=sideways", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert (await error_of(response, 400))["param"] == "order"
