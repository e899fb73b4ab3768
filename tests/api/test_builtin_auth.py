"""The built-in issuer: guest login, tokens, refresh rotation, logout, JWKS, key rotation."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest

from llm_api.app import create_app
from tests.conftest import test_settings
from tests.sql import query as rows

TOKEN_FIELDS = {
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


async def guest(client) -> dict:
    response = await client.post("/auth/guest-login")
    assert response.status == 201, await response.text()
    return await response.json()


def bearer(tokens: dict) -> dict:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


@pytest.mark.parametrize("path", ["/auth/guest-login", "/llm/auth/guest-login"])
async def test_guest_login_answers_201_with_a_token_set(client, path):
    response = await client.post(path)
    assert response.status == 201
    tokens = await response.json()
    assert set(tokens) == TOKEN_FIELDS
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 3600
    assert tokens["user_id"].startswith("usr_") and tokens["principal_id"] == tokens["user_id"]
    assert tokens["username"].startswith("guest-")
    assert abs(tokens["expires_at"] - (time.time() + 3600)) < 30
    assert tokens["refresh_token"].startswith("rt_")


async def test_the_seed_flow_guest_login_then_models(client):
    tokens = await guest(client)
    response = await client.get("/v1/models", headers=bearer(tokens))
    assert response.status == 200
    assert await response.json() == {"object": "list", "data": []}
    assert response.headers["X-Auth-Method"] == "jwt"
    assert response.headers["X-Principal-Id"] == tokens["user_id"]


async def test_access_tokens_carry_the_claims_and_verify_with_the_published_keys(client, settings):
    tokens = await guest(client)
    for path in ["/.well-known/jwks.json", "/auth/.well-known/jwks.json", "/llm/.well-known/jwks.json"]:
        response = await client.get(path)
        assert response.status == 200
        jwks = await response.json()
        keys = {key.key_id: key for key in jwt.PyJWKSet.from_dict(jwks).keys}
        header = jwt.get_unverified_header(tokens["access_token"])
        assert header["alg"] == "RS256" and header["kid"] in keys
        claims = jwt.decode(tokens["access_token"], keys[header["kid"]].key, algorithms=["RS256"], audience="account")
        assert claims["iss"] == settings.token_issuer == "llm-api"
        assert claims["exp"] - claims["iat"] == 3600
        assert claims["jti"] and claims["sub"]
        assert claims["realm_access"]["roles"] == ["guest"]
        assert all(set(key) >= {"kty", "kid", "use", "alg", "n", "e"} and "d" not in key for key in jwks["keys"])


async def test_me_describes_the_guest(client):
    tokens = await guest(client)
    response = await client.get("/auth/me", headers=bearer(tokens))
    assert response.status == 200
    me = await response.json()
    assert me["id"] == tokens["user_id"] and me["object"] == "principal"
    assert (me["auth_method"], me["is_guest"], me["is_admin"], me["roles"]) == ("jwt", True, False, ["guest"])
    assert me["issuer"] == "llm-api" and me["username"] == tokens["username"]


async def test_refresh_rotates_and_a_replayed_token_revokes_the_login(client):
    first = await guest(client)
    response = await client.post("/auth/refresh-token", json={"refresh_token": first["refresh_token"]})
    assert response.status == 200
    second = await response.json()
    assert second["refresh_token"] != first["refresh_token"] and second["user_id"] == first["user_id"]
    assert (await client.get("/auth/me", headers=bearer(second))).status == 200

    replay = await client.post("/auth/refresh-token", json={"refresh_token": first["refresh_token"]})
    assert replay.status == 401
    assert (await replay.json())["error"]["code"] == "refresh_token_reused"
    # The replay marks the login as stolen: the newest refresh token of it stops working too.
    after = await client.post("/auth/refresh-token", json={"refresh_token": second["refresh_token"]})
    assert after.status == 401


async def test_concurrent_refreshes_with_one_token_give_one_new_pair(client):
    tokens = await guest(client)
    answers = await asyncio.gather(
        *(client.post("/auth/refresh-token", json={"refresh_token": tokens["refresh_token"]}) for _ in range(5))
    )
    assert sorted(answer.status for answer in answers) == [200, 401, 401, 401, 401]


@pytest.mark.parametrize("body", [{"refresh_token": "rt_unknown"}, {"refresh_token": "garbage"}, {}])
async def test_unknown_or_missing_refresh_tokens_are_401(client, body):
    response = await client.post("/auth/refresh-token", json=body)
    assert response.status == 401
    assert (await response.json())["error"]["type"] == "authentication_error"


async def test_logout_revokes_the_login_and_is_idempotent(client):
    tokens = await guest(client)
    for _ in range(2):
        response = await client.post("/auth/logout", json={"refresh_token": tokens["refresh_token"]})
        assert response.status == 200
        assert await response.json() == {"object": "logout", "status": "logged_out"}
    refused = await client.post("/auth/refresh-token", json={"refresh_token": tokens["refresh_token"]})
    assert refused.status == 401
    assert (await client.post("/auth/logout", json={"refresh_token": "rt_nobody"})).status == 200
    assert (await client.post("/auth/logout")).status == 200


async def test_secrets_are_not_stored_in_clear(client, database_dsn):
    tokens = await guest(client)
    for (sealed,) in rows(database_dsn, "SELECT private_key_sealed FROM llm_api.signing_keys"):
        assert b"PRIVATE KEY" not in bytes(sealed)
    hashes = rows(database_dsn, "SELECT token_hash FROM llm_api.refresh_tokens WHERE user_id = %s", tokens["user_id"])
    assert len(hashes) == 1 and len(bytes(hashes[0][0])) == 32
    assert tokens["refresh_token"].encode() not in bytes(hashes[0][0])


async def test_two_workers_share_keys_and_logins(aiohttp_client, make_database):
    dsn = make_database()
    worker_a = await aiohttp_client(create_app(test_settings(dsn)))
    worker_b = await aiohttp_client(create_app(test_settings(dsn)))
    tokens = await guest(worker_a)
    assert (await worker_b.get("/auth/me", headers=bearer(tokens))).status == 200
    refreshed = await worker_b.post("/auth/refresh-token", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status == 200
    assert (await worker_a.get("/auth/me", headers=bearer(await refreshed.json()))).status == 200


async def test_rotation_keeps_earlier_tokens_valid(aiohttp_client, make_database):
    dsn = make_database()
    client = await aiohttp_client(create_app(test_settings(dsn, SIGNING_KEY_ROTATION="1s")))
    old = await guest(client)
    await asyncio.sleep(1.2)  # the current key is now due for rotation: the next signature rotates it
    new = await guest(client)
    old_kid = jwt.get_unverified_header(old["access_token"])["kid"]
    new_kid = jwt.get_unverified_header(new["access_token"])["kid"]
    assert old_kid != new_kid
    assert (await client.get("/auth/me", headers=bearer(old))).status == 200
    assert (await client.get("/auth/me", headers=bearer(new))).status == 200
    published = {key["kid"] for key in (await (await client.get("/.well-known/jwks.json")).json())["keys"]}
    assert {old_kid, new_kid} <= published
    assert rows(dsn, "SELECT count(*) FROM llm_api.signing_keys WHERE retired_at IS NULL") == [(1,)]


async def test_an_expired_access_token_is_refused(aiohttp_client, make_database):
    client = await aiohttp_client(create_app(test_settings(make_database(), ACCESS_TOKEN_TTL="1s", AUTH_CLOCK_SKEW="1ms")))
    tokens = await guest(client)
    assert (await client.get("/auth/me", headers=bearer(tokens))).status == 200
    await asyncio.sleep(2.1)
    response = await client.get("/auth/me", headers=bearer(tokens))
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "token_expired"
