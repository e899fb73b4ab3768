"""Admin-only operations (403 unless admin; the bootstrap ADMIN_API_KEY is admin) and gateway-asserted identity."""

from __future__ import annotations

import pytest

from llm_api.app import create_app
from tests.api.test_error_surface import error_of
from tests.conftest import test_settings

ADMIN_KEY = "admin-key-0123456789abcdefghijklmnopqrstuv"
GATEWAY_SECRET = "gateway-secret-0123456789abcdefghijklmnop"
PROVIDER = {"name": "local-vllm", "vendor": "vllm", "base_url": "http://127.0.0.1:8001/v1", "models": ["jan-v1-4b"]}
ADMIN_OPERATIONS = [
    ("GET", "/v1/admin/providers", None),
    ("POST", "/v1/admin/providers", PROVIDER),
    ("GET", "/v1/admin/providers/prov_abc123", None),
    ("PATCH", "/v1/admin/providers/prov_abc123", {"active": False}),
    ("DELETE", "/v1/admin/providers/prov_abc123", None),
    ("GET", "/llm/v1/admin/providers", None),  # the /llm mirror is guarded the same way
]
GATEWAY_IDENTITY = {
    "X-User-Subject": "kong-user-1",
    "X-User-Username": "kong-user",
    "X-User-Email": "kong-user@example.com",
    "X-User-Roles": "user,admin",
    "X-Auth-Method": "apikey",
}


@pytest.fixture
async def admin_client(aiohttp_client, make_database):
    # Its own database: the admin tests create providers, which every user of a database would see.
    return await aiohttp_client(create_app(test_settings(make_database(), ADMIN_API_KEY=ADMIN_KEY)))


@pytest.fixture
async def gateway_client(aiohttp_client, database_dsn):
    return await aiohttp_client(create_app(test_settings(database_dsn, GATEWAY_SHARED_SECRET=GATEWAY_SECRET)))


async def guest(client) -> tuple[dict, str]:
    response = await client.post("/auth/guest-login")
    assert response.status == 201, await response.text()
    body = await response.json()
    return {"Authorization": f"Bearer {body['access_token']}"}, body["user_id"]


async def user_api_key(client) -> dict:
    headers, _ = await guest(client)
    response = await client.post("/auth/api-keys", json={"name": "laptop"}, headers=headers)
    assert response.status == 201, await response.text()
    return {"X-API-Key": (await response.json())["key"]}


# --- admin-only operations ---------------------------------------------------------------------------


@pytest.mark.parametrize("method,path,body", ADMIN_OPERATIONS)
async def test_admin_operations_are_403_to_a_guest(admin_client, method, path, body):
    headers, user_id = await guest(admin_client)
    response = await admin_client.request(method, path, json=body, headers=headers)
    error = await error_of(response, 403)
    assert error["type"] == "permission_error"
    assert error["code"] == "admin_required"
    assert response.headers["X-Principal-Id"] == user_id


@pytest.mark.parametrize("method,path,body", ADMIN_OPERATIONS)
async def test_admin_operations_are_403_to_a_user_api_key(admin_client, method, path, body):
    response = await admin_client.request(method, path, json=body, headers=await user_api_key(admin_client))
    error = await error_of(response, 403)
    assert error["code"] == "admin_required"
    assert response.headers["X-Auth-Method"] == "apikey"


@pytest.mark.parametrize("method,path,body", ADMIN_OPERATIONS)
async def test_admin_operations_are_401_without_credentials(admin_client, method, path, body):
    error = await error_of(await admin_client.request(method, path, json=body), 401)
    assert error["code"] == "missing_credentials"


@pytest.mark.parametrize("how", ["x-api-key", "bearer"])
@pytest.mark.parametrize("method,path,body", ADMIN_OPERATIONS)
async def test_the_bootstrap_admin_key_gets_past_auth(admin_client, method, path, body, how):
    headers = {"X-API-Key": ADMIN_KEY} if how == "x-api-key" else {"Authorization": f"Bearer {ADMIN_KEY}"}
    response = await admin_client.request(method, path, json=body, headers=headers)
    if "prov_abc123" in path:  # past authentication and authorisation, to the (missing) provider
        assert (await error_of(response, 404))["code"] == "provider_not_found"
    else:
        assert response.status == (201 if method == "POST" else 200), await response.text()
    assert response.headers["X-Auth-Method"] == "apikey"


@pytest.mark.parametrize("how", ["x-api-key", "bearer"])
async def test_the_admin_key_describes_the_administrator(admin_client, how):
    headers = {"X-API-Key": ADMIN_KEY} if how == "x-api-key" else {"Authorization": f"Bearer {ADMIN_KEY}"}
    response = await admin_client.get("/auth/me", headers=headers)
    assert response.status == 200, await response.text()
    me = await response.json()
    assert me["is_admin"] is True
    assert me["roles"] == ["admin"]
    assert me["is_guest"] is False
    assert me["auth_method"] == "apikey"
    assert response.headers["X-Principal-Id"] == me["id"]
    # One administrator user, whichever way the key is sent.
    again = await (await admin_client.get("/auth/me", headers={"X-API-Key": ADMIN_KEY})).json()
    assert again["id"] == me["id"]


@pytest.mark.parametrize("header", ["X-API-Key", "Authorization"])
async def test_a_wrong_admin_key_of_the_same_length_is_401(admin_client, header):
    wrong = ADMIN_KEY[:-1] + ("x" if ADMIN_KEY[-1] != "x" else "y")
    assert len(wrong) == len(ADMIN_KEY)
    value = wrong if header == "X-API-Key" else f"Bearer {wrong}"
    for path in ("/auth/me", "/v1/admin/providers"):
        response = await admin_client.get(path, headers={header: value})
        error = await error_of(response, 401)
        assert error["type"] == "authentication_error"
        assert "X-Principal-Id" not in response.headers


async def test_the_admin_key_means_nothing_when_not_configured(client):
    for headers in ({"X-API-Key": ADMIN_KEY}, {"Authorization": f"Bearer {ADMIN_KEY}"}):
        await error_of(await client.get("/v1/admin/providers", headers=headers), 401)


# --- gateway identity --------------------------------------------------------------------------------


async def test_gateway_identity_is_the_principal(gateway_client):
    headers = {"X-Gateway-Secret": GATEWAY_SECRET, **GATEWAY_IDENTITY}
    response = await gateway_client.get("/auth/me", headers=headers)
    assert response.status == 200, await response.text()
    me = await response.json()
    assert me["subject"] == "kong-user-1"
    assert me["issuer"] == "llm-api"  # the service's own token issuer, by default
    assert me["username"] == "kong-user"
    assert me["email"] == "kong-user@example.com"
    assert me["auth_method"] == "apikey"
    assert me["roles"] == ["user", "admin"]
    assert me["is_admin"] is True
    assert me["is_guest"] is False
    assert me["id"].startswith("usr_")
    assert response.headers["X-Auth-Method"] == "apikey"
    assert response.headers["X-Principal-Id"] == me["id"]
    # The same subject is the same user.
    again = await (await gateway_client.get("/auth/me", headers=headers)).json()
    assert again["id"] == me["id"]
    # A gateway admin gets past the admin check.
    listing = await gateway_client.get("/v1/admin/providers", headers=headers)
    assert listing.status == 200, await listing.text()


async def test_gateway_identity_defaults_and_issuer(gateway_client):
    base = {"X-Gateway-Secret": GATEWAY_SECRET, "X-User-Subject": "kong-user-2"}
    me = await (await gateway_client.get("/auth/me", headers=base)).json()
    assert me["auth_method"] == "jwt"
    assert me["roles"] == [] and me["is_admin"] is False
    error = await error_of(await gateway_client.get("/v1/admin/providers", headers=base), 403)
    assert error["code"] == "admin_required"
    # Another issuer makes another user, even with the same subject.
    other = await (await gateway_client.get("/auth/me", headers={**base, "X-User-Issuer": "https://idp.example"})).json()
    assert other["issuer"] == "https://idp.example"
    assert other["id"] != me["id"]


async def test_gateway_identity_uses_the_configured_issuer(aiohttp_client, database_dsn):
    client = await aiohttp_client(
        create_app(test_settings(database_dsn, GATEWAY_SHARED_SECRET=GATEWAY_SECRET, ISSUER="https://llm.example"))
    )
    me = await (await client.get("/auth/me", headers={"X-Gateway-Secret": GATEWAY_SECRET, **GATEWAY_IDENTITY})).json()
    assert me["issuer"] == "https://llm.example"


@pytest.mark.parametrize("secret", [None, "x" * len(GATEWAY_SECRET), GATEWAY_SECRET[:-1], GATEWAY_SECRET + "x", ""])
async def test_gateway_headers_without_the_right_secret_are_ignored(gateway_client, secret):
    headers = dict(GATEWAY_IDENTITY)
    if secret is not None:
        headers["X-Gateway-Secret"] = secret
    response = await gateway_client.get("/auth/me", headers=headers)
    error = await error_of(response, 401)
    assert error["code"] == "missing_credentials"
    assert "X-Principal-Id" not in response.headers


async def test_gateway_headers_are_ignored_when_no_secret_is_configured(client):
    for secret in (GATEWAY_SECRET, ""):
        response = await client.get("/auth/me", headers={"X-Gateway-Secret": secret, **GATEWAY_IDENTITY})
        error = await error_of(response, 401)
        assert error["code"] == "missing_credentials"


async def test_the_secret_without_a_subject_is_not_a_principal(gateway_client):
    for subject in (None, "", "   "):
        headers = {"X-Gateway-Secret": GATEWAY_SECRET, "X-User-Roles": "admin"}
        if subject is not None:
            headers["X-User-Subject"] = subject
        error = await error_of(await gateway_client.get("/auth/me", headers=headers), 401)
        assert error["code"] == "missing_credentials"


async def test_the_requests_own_credential_wins_over_gateway_headers(gateway_client):
    headers, user_id = await guest(gateway_client)
    response = await gateway_client.get("/auth/me", headers={**headers, "X-Gateway-Secret": GATEWAY_SECRET, **GATEWAY_IDENTITY})
    assert response.status == 200, await response.text()
    me = await response.json()
    assert me["id"] == user_id
    assert me["subject"] != "kong-user-1"
    assert me["is_admin"] is False and me["is_guest"] is True
    assert me["auth_method"] == "jwt"
    assert response.headers["X-Auth-Method"] == "jwt"
    # The asserted admin role does not leak into the guest's rights either.
    error = await error_of(
        await gateway_client.get(
            "/v1/admin/providers", headers={**headers, "X-Gateway-Secret": GATEWAY_SECRET, **GATEWAY_IDENTITY}
        ),
        403,
    )
    assert error["code"] == "admin_required"


async def test_an_invalid_own_credential_is_not_rescued_by_gateway_headers(gateway_client):
    headers = {"Authorization": "Bearer not-a-token", "X-Gateway-Secret": GATEWAY_SECRET, **GATEWAY_IDENTITY}
    error = await error_of(await gateway_client.get("/auth/me", headers=headers), 401)
    assert error["code"] == "invalid_token"
