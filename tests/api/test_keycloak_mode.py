"""Keycloak mode end to end: the app against a wire-level fake Keycloak, real HTTP on both sides.

Guest provisioning through the admin REST API, refresh and logout through the token endpoints,
tokens verified against the realm's JWKS (cached, refetched on rotation, rate-limited on made-up
kids), readiness following the JWKS, and admin rights from realm roles.
"""

from __future__ import annotations

import asyncio
import secrets
import time

import jwt
import pytest

from llm_api.app import create_app
from tests.api.test_error_surface import error_of
from tests.conftest import free_port, test_settings
from tests.fakes.keycloak import FakeKeycloak
from tests.sql import query

ADMIN_USER = {"KEYCLOAK_ADMIN": "admin", "KEYCLOAK_ADMIN_PASSWORD": "admin"}
BACKEND_CLIENT = {"BACKEND_CLIENT_ID": "backend", "BACKEND_CLIENT_SECRET": "backend-secret"}
MIN_REFETCH_INTERVAL = 10.0  # RemoteJwks: an unknown kid refetches the JWKS at most this often


@pytest.fixture
def make_client(aiohttp_client, database_dsn, kc):
    """The app in Keycloak mode against the fake, with extra environment variables."""

    async def make(**env):
        env.setdefault("KEYCLOAK_BASE_URL", kc.base_url)
        return await aiohttp_client(create_app(test_settings(database_dsn, **env)))

    return make


@pytest.fixture
async def api(make_client):
    """The app with the master realm's admin for guest provisioning."""
    return await make_client(**ADMIN_USER)


def jwks_fetches(kc: FakeKeycloak) -> int:
    return kc.requests.count(("GET", f"/realms/{kc.realm}/protocol/openid-connect/certs"))


def jwt_kid(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def user_rows(dsn: str, issuer: str, subject: str) -> list[tuple]:
    return query(dsn, "SELECT id, username, is_guest FROM llm_api.users WHERE issuer = %s AND subject = %s", issuer, subject)


async def me(client, token: str, prefix: str = ""):
    response = await client.get(f"{prefix}/auth/me", headers=bearer(token))
    assert response.status == 200, await response.text()
    return response, await response.json()


async def guest_login(client, prefix: str = "") -> dict:
    response = await client.post(f"{prefix}/auth/guest-login")
    assert response.status == 201, await response.text()
    return await response.json()


# --- guest login ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "/llm"])
async def test_guest_login_provisions_a_keycloak_guest_whose_token_works(api, kc, database_dsn, prefix):
    body = await guest_login(api, prefix)
    assert set(body) == {
        "access_token",
        "refresh_token",
        "token_type",
        "expires_in",
        "expires_at",
        "refresh_expires_in",
        "user_id",
        "username",
        "principal_id",
    }
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == kc.access_token_ttl
    assert body["refresh_expires_in"] == kc.refresh_token_ttl
    assert body["refresh_token"]
    assert body["principal_id"] == body["user_id"]
    assert body["username"].startswith("guest-")

    # The guest exists in Keycloak, with the guest role and the guest attribute.
    created = [u for u in kc.users.values() if u["username"] == body["username"]]
    assert len(created) == 1
    guest = created[0]
    assert guest["enabled"] is True
    assert "guest" in guest["realm_roles"]
    assert guest["attributes"] == {"guest": ["true"]}
    assert guest["email"] == f"{body['username']}@temp.jan.ai"
    assert kc.sessions(body["username"])  # it signed in (password grant)

    response, principal = await me(api, body["access_token"], prefix)
    assert principal["id"] == body["user_id"]
    assert principal["object"] == "principal"
    assert principal["auth_method"] == "jwt"
    assert principal["is_guest"] is True
    assert principal["is_admin"] is False
    assert "guest" in principal["roles"]
    assert principal["subject"] == guest["id"]
    assert principal["issuer"] == kc.issuer
    assert principal["username"] == body["username"]
    assert response.headers["X-Auth-Method"] == "jwt"
    assert response.headers["X-Principal-Id"] == body["user_id"]

    models = await api.get(f"{prefix}/v1/models", headers=bearer(body["access_token"]))
    assert models.status == 200, await models.text()
    assert await models.json() == {"object": "list", "data": []}
    assert models.headers["X-Principal-Id"] == body["user_id"]

    # One user row, keyed by (issuer, Keycloak subject).
    assert user_rows(database_dsn, kc.issuer, guest["id"]) == [(body["user_id"], body["username"], True)]


async def test_guest_login_with_the_master_admin_uses_admin_cli(api, kc):
    await guest_login(api)
    assert ("POST", "/realms/master/protocol/openid-connect/token") in kc.requests
    assert ("POST", f"/admin/realms/{kc.realm}/users") in kc.requests


async def test_guest_login_with_backend_client_credentials(make_client, kc):
    client = await make_client(**BACKEND_CLIENT)
    body = await guest_login(client)
    guest = next(u for u in kc.users.values() if u["username"] == body["username"])
    assert "guest" in guest["realm_roles"]
    assert guest["attributes"] == {"guest": ["true"]}
    # The admin token came from the backend's service account, not from the master realm.
    assert ("POST", "/realms/master/protocol/openid-connect/token") not in kc.requests

    _, principal = await me(client, body["access_token"])
    assert principal["id"] == body["user_id"]
    assert principal["is_guest"] is True


async def test_guest_login_without_admin_credentials_is_503(make_client, kc):
    client = await make_client()
    users_before = set(kc.users)
    response = await client.post("/auth/guest-login")
    error = await error_of(response, 503)
    assert error["code"] == "identity_provider_not_configured"
    assert error["type"] == "service_unavailable_error"
    assert error["param"] == "keycloak"
    assert "KEYCLOAK_ADMIN" in error["message"]
    assert set(kc.users) == users_before
    assert not any(method == "POST" and "/admin/" in path for method, path in kc.requests)


# --- refresh and logout -----------------------------------------------------------------------------------


async def test_refresh_rotates_and_a_replayed_refresh_token_is_401(api, kc):
    login = await guest_login(api)
    response = await api.post("/auth/refresh-token", json={"refresh_token": login["refresh_token"]})
    assert response.status == 200, await response.text()
    refreshed = await response.json()
    assert refreshed["token_type"] == "Bearer"
    assert refreshed["user_id"] == login["user_id"]
    assert refreshed["access_token"] != login["access_token"]
    assert refreshed["refresh_token"] != login["refresh_token"]
    _, principal = await me(api, refreshed["access_token"])
    assert principal["id"] == login["user_id"]

    replay = await api.post("/auth/refresh-token", json={"refresh_token": login["refresh_token"]})
    error = await error_of(replay, 401)
    assert error["type"] == "authentication_error"
    assert error["code"] == "invalid_refresh_token"


async def test_logout_ends_the_keycloak_session(api, kc):
    login = await guest_login(api)
    response = await api.post("/auth/refresh-token", json={"refresh_token": login["refresh_token"]})
    assert response.status == 200, await response.text()
    latest = (await response.json())["refresh_token"]
    assert kc.sessions(login["username"])

    response = await api.post("/auth/logout", json={"refresh_token": latest})
    assert response.status == 200, await response.text()
    assert await response.json() == {"object": "logout", "status": "logged_out"}
    assert kc.sessions(login["username"]) == []  # the fake saw the logout

    # `latest` was never used: only the logout can make it fail.
    error = await error_of(await api.post("/auth/refresh-token", json={"refresh_token": latest}), 401)
    assert error["code"] == "invalid_refresh_token"


# --- users of the realm -------------------------------------------------------------------------------------


async def test_a_realm_user_is_one_user_across_tokens(api, kc, database_dsn):
    subject = kc.add_user("alice", "pw", realm_roles=("user",))
    first, second = kc.issue_token("alice"), kc.issue_token("alice")
    assert first != second  # two sessions, two tokens

    response, principal = await me(api, first)
    assert principal["is_guest"] is False
    assert principal["is_admin"] is False
    assert principal["subject"] == subject
    assert principal["username"] == "alice"
    assert "user" in principal["roles"]
    assert response.headers["X-Principal-Id"] == principal["id"]

    _, again = await me(api, second)
    assert again["id"] == principal["id"]
    assert user_rows(database_dsn, kc.issuer, subject) == [(principal["id"], "alice", False)]


async def test_admin_realm_role_grants_admin_operations(api, kc):
    kc.add_user("root", "pw", realm_roles=("admin",))
    kc.add_user("bob", "pw", realm_roles=("user",))
    admin_token, user_token = kc.issue_token("root"), kc.issue_token("bob")

    _, principal = await me(api, admin_token)
    assert principal["is_admin"] is True
    assert "admin" in principal["roles"]
    listing = await api.get("/v1/admin/providers", headers=bearer(admin_token))
    assert listing.status == 200, await listing.text()
    assert (await listing.json())["object"] == "list"

    _, principal = await me(api, user_token)
    assert principal["is_admin"] is False
    error = await error_of(await api.get("/v1/admin/providers", headers=bearer(user_token)), 403)
    assert error["code"] == "admin_required"
    assert error["type"] == "permission_error"


# --- the JWKS -----------------------------------------------------------------------------------------------


async def test_jwks_is_fetched_once_for_many_requests(api, kc):
    kc.add_user("alice", "pw")
    tokens = [kc.issue_token("alice") for _ in range(4)]
    assert jwks_fetches(kc) == 0
    for i in range(20):
        path = "/auth/me" if i % 2 else "/v1/models"
        response = await api.get(path, headers=bearer(tokens[i % len(tokens)]))
        assert response.status == 200, await response.text()
    assert jwks_fetches(kc) == 1


async def test_older_keys_still_published_keep_verifying(api, kc):
    kc.add_user("alice", "pw")
    old_kid = kc.current_kid
    old_token = kc.issue_token("alice")
    new_kid = kc.rotate_key()
    new_token = kc.issue_token("alice")
    assert new_kid != old_kid
    for token in (old_token, new_token, old_token):
        await me(api, token)
    assert jwks_fetches(kc) == 1


async def test_key_rotation_and_removal_reach_the_verifier_through_one_refetch(make_client, kc):
    """One wait covers two apps: A (default refresh interval) notices the rotation through the new
    kid; B (JWKS_REFRESH_INTERVAL=1s) drops the removed key through its periodic refresh."""
    a = await make_client(**ADMIN_USER)
    b = await make_client(**ADMIN_USER, JWKS_REFRESH_INTERVAL="1s")
    kc.add_user("alice", "pw")
    old_token = kc.issue_token("alice")

    await me(a, old_token)
    await me(b, old_token)
    started = time.monotonic()  # both apps fetched the JWKS (and may not refetch) from here on
    assert jwks_fetches(kc) == 2

    kc.rotate_key()
    new_token = kc.issue_token("alice")
    kc.drop_old_keys()
    assert jwt_kid(old_token) not in {key["kid"] for key in kc.jwks()["keys"]}
    for client in (a, b):
        await me(client, old_token)  # still cached: nothing told the apps yet
    assert jwks_fetches(kc) == 2

    await asyncio.sleep(max(0.0, started + MIN_REFETCH_INTERVAL + 0.3 - time.monotonic()))

    # A: the new kid is unknown, so A refetches once and accepts it; the dropped key is gone then.
    await me(a, new_token)
    assert jwks_fetches(kc) == 3
    error = await error_of(await a.get("/auth/me", headers=bearer(old_token)), 401)
    assert error["code"] == "invalid_token"
    # B: its keys are stale, so the next token makes it refetch; the dropped key is refused.
    error = await error_of(await b.get("/v1/models", headers=bearer(old_token)), 401)
    assert error["code"] == "invalid_token"
    assert jwks_fetches(kc) == 4
    await me(b, new_token)
    for client in (a, b):
        for _ in range(3):
            await me(client, new_token)
    assert jwks_fetches(kc) == 4


async def test_unknown_kid_storm_fetches_the_jwks_at_most_once(api, kc):
    kc.add_user("alice", "pw")
    valid = kc.issue_token("alice")
    claims = {
        "iss": kc.issuer,
        "aud": "account",
        "azp": kc.client_id,
        "sub": "storm",
        "iat": int(time.time()),
        "exp": int(time.time()) + 300,
    }
    for _ in range(10):
        token = kc.sign(claims, kid=secrets.token_urlsafe(16))
        error = await error_of(await api.get("/auth/me", headers=bearer(token)), 401)
        assert error["code"] == "invalid_token"
    assert jwks_fetches(kc) <= 1
    await me(api, valid)  # the keys loaded meanwhile serve real tokens
    assert jwks_fetches(kc) == 1


# --- readiness ----------------------------------------------------------------------------------------------


async def test_readiness_lists_the_jwks(api):
    response = await api.get("/v1/readyz")
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["status"] == "ready"
    assert body["checks"]["jwks"]["status"] == "ok"
    assert body["checks"]["database"]["status"] == "ok"


@pytest.mark.parametrize("how", ["keycloak stopped", "JWKS_URL on a closed port"])
async def test_readiness_is_503_without_the_jwks_but_liveness_is_not(make_client, kc, how):
    if how == "keycloak stopped":
        await kc.stop()  # the app starts after Keycloak went away
        client = await make_client()
    else:
        closed = f"http://127.0.0.1:{free_port()}/realms/jan/protocol/openid-connect/certs"
        client = await make_client(KEYCLOAK_BASE_URL=None, JWKS_URL=closed, ISSUER="http://keycloak/realms/jan")
    for path in ("/v1/readyz", "/readyz"):
        error = await error_of(await client.get(path), 503)
        assert error["param"] == "jwks"
        assert error["code"] == "not_ready"
        assert error["message"].startswith("jwks: ")
    alive = await client.get("/v1/healthz")
    assert alive.status == 200
    assert await alive.json() == {"status": "ok"}


async def test_only_realm_roles_and_our_clients_roles_count(api, kc):
    kc.add_user("carol", "pw", realm_roles=("user",))
    other_admin = kc.issue_token("carol", resource_access={"grafana": {"roles": ["admin"]}})
    described = await (await api.get("/auth/me", headers=bearer(other_admin))).json()
    assert "admin" not in described["roles"] and described["is_admin"] is False
    ours = kc.issue_token("carol", resource_access={"jan-client": {"roles": ["admin"]}})
    described = await (await api.get("/auth/me", headers=bearer(ours))).json()
    assert described["is_admin"] is True


async def test_a_keycloak_that_refuses_the_new_guest_is_a_502(make_client, kc):
    # CLIENT names a client the realm does not have: Keycloak refuses the guest's own sign-in.
    client = await make_client(CLIENT="no-such-client", **ADMIN_USER)
    response = await client.post("/auth/guest-login")
    assert response.status == 502, await response.text()
    error = (await response.json())["error"]
    assert (error["type"], error["code"]) == ("upstream_error", "identity_provider_error")
    assert "sign-in" in error["message"]
