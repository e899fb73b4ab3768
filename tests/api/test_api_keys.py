"""API keys: created once with their secret, listed without it, usable as credentials, capped, revocable."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import string
import time

import pytest

from llm_api.app import create_app
from tests.api.test_error_surface import error_of
from tests.conftest import test_settings
from tests.sql import query, query_dicts

DAY = 86400
SLACK = 120  # seconds of tolerance between the test's clock and the database's


async def guest(client) -> dict:
    """A new guest user: its bearer headers and its id."""
    response = await client.post("/auth/guest-login")
    assert response.status == 201, await response.text()
    body = await response.json()
    return {"headers": {"Authorization": f"Bearer {body['access_token']}"}, "id": body["user_id"]}


async def create_key(client, headers, **body) -> dict:
    response = await client.post("/auth/api-keys", json={"name": "laptop", **body}, headers=headers)
    assert response.status == 201, await response.text()
    return await response.json()


async def list_keys(client, headers) -> list[dict]:
    response = await client.get("/auth/api-keys", headers=headers)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert set(body) == {"object", "data"}
    assert body["object"] == "list"
    return body["data"]


def listed(keys: list[dict], key_id: str) -> dict:
    [key] = [key for key in keys if key["id"] == key_id]
    return key


def db_row(dsn: str, key_id: str) -> dict:
    [row] = query_dicts(dsn, "SELECT * FROM llm_api.api_keys WHERE id = %s", key_id)
    return row


# --- creation ------------------------------------------------------------------------------------


async def test_create_returns_the_secret_once_with_its_prefix_and_suffix(client):
    user = await guest(client)
    before = time.time()
    key = await create_key(client, user["headers"])
    assert key["object"] == "api_key"
    assert key["name"] == "laptop"
    assert key["id"].startswith("key_")
    secret = key["key"]
    assert secret.startswith("sk_")
    assert len(secret) >= 40
    assert key["prefix"] == secret[:7]
    assert key["suffix"] == secret[-4:]
    assert key["status"] == "active"
    assert key["last_used_at"] is None and key["revoked_at"] is None
    assert abs(key["created_at"] - before) < SLACK
    # The default lifetime is 90 days.
    assert abs(key["expires_at"] - (before + 90 * DAY)) < SLACK


async def test_expires_in_days_sets_the_lifetime(client):
    user = await guest(client)
    before = time.time()
    key = await create_key(client, user["headers"], expires_in_days=10)
    assert abs(key["expires_at"] - (before + 10 * DAY)) < SLACK


async def test_expires_in_days_above_the_maximum_is_capped(client):
    user = await guest(client)
    before = time.time()
    key = await create_key(client, user["headers"], expires_in_days=1000)  # within the schema, above API_KEY_MAX_TTL
    assert abs(key["expires_at"] - (before + 365 * DAY)) < SLACK


async def test_a_lower_configured_maximum_caps_too(aiohttp_client, database_dsn):
    client = await aiohttp_client(create_app(test_settings(database_dsn, API_KEY_MAX_TTL="30d")))
    user = await guest(client)
    before = time.time()
    key = await create_key(client, user["headers"], expires_in_days=90)
    assert abs(key["expires_at"] - (before + 30 * DAY)) < SLACK


# --- listing and storage ---------------------------------------------------------------------------


async def test_list_is_newest_first_and_never_shows_a_secret(client):
    user = await guest(client)
    created = [await create_key(client, user["headers"], name=f"key-{n}") for n in range(3)]
    keys = await list_keys(client, user["headers"])
    assert [key["id"] for key in keys] == [key["id"] for key in reversed(created)]
    text = await (await client.get("/auth/api-keys", headers=user["headers"])).text()
    for key in created:
        assert key["key"] not in text
        assert key["key"][7:-4] not in text  # not even the secret part between prefix and suffix
    for key in keys:
        assert "key" not in key
        assert "key_hash" not in key
        assert set(key) == {
            "id",
            "object",
            "name",
            "prefix",
            "suffix",
            "status",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
        }
        assert key["status"] == "active"


async def test_list_shows_only_the_callers_keys(client):
    alice, bob = await guest(client), await guest(client)
    key = await create_key(client, alice["headers"])
    assert await list_keys(client, bob["headers"]) == []
    assert [k["id"] for k in await list_keys(client, alice["headers"])] == [key["id"]]


async def test_the_database_keeps_only_a_keyed_hash(client, database_dsn):
    user = await guest(client)
    key = await create_key(client, user["headers"])
    secret = key["key"]
    row = db_row(database_dsn, key["id"])
    hidden = secret[7:-4]  # what prefix and suffix do not show
    for column, value in row.items():
        if value is None:
            continue
        raw = bytes(value) if isinstance(value, (bytes, memoryview)) else str(value).encode()
        assert secret.encode() not in raw, column
        assert hidden.encode() not in raw, column
    key_hash = bytes(row["key_hash"])
    assert len(key_hash) == 32
    assert key_hash != hashlib.sha256(secret.encode()).digest()  # keyed, not a plain digest of the secret
    assert row["prefix"] == secret[:7] and row["suffix"] == secret[-4:]
    assert row["user_id"] == user["id"]


# --- using a key -----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["x-api-key", "bearer"])
async def test_the_key_authenticates_as_its_owner(client, how):
    user = await guest(client)
    me_by_token = await (await client.get("/auth/me", headers=user["headers"])).json()
    key = await create_key(client, user["headers"])
    headers = {"X-API-Key": key["key"]} if how == "x-api-key" else {"Authorization": f"Bearer {key['key']}"}
    response = await client.get("/auth/me", headers=headers)
    assert response.status == 200, await response.text()
    me = await response.json()
    assert me["id"] == me_by_token["id"] == user["id"]
    assert me["subject"] == me_by_token["subject"]
    assert me["auth_method"] == "apikey"
    assert me["is_admin"] is False
    assert response.headers["X-Auth-Method"] == "apikey"
    assert response.headers["X-Principal-Id"] == user["id"]


async def test_using_a_key_sets_last_used_at(client):
    user = await guest(client)
    key = await create_key(client, user["headers"])
    assert listed(await list_keys(client, user["headers"]), key["id"])["last_used_at"] is None
    before = time.time()
    assert (await client.get("/v1/models", headers={"X-API-Key": key["key"]})).status == 200
    used = listed(await list_keys(client, user["headers"]), key["id"])["last_used_at"]
    assert used is not None
    assert abs(used - before) < SLACK


async def test_unknown_key_is_401_with_the_envelope_only(client):
    unknown = "sk_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))
    for headers in ({"X-API-Key": unknown}, {"Authorization": f"Bearer {unknown}"}):
        response = await client.get("/auth/me", headers=headers)
        error = await error_of(response, 401)
        assert error["type"] == "authentication_error"
        assert error["code"] == "invalid_api_key"
        assert unknown not in await response.text()
        assert "X-Principal-Id" not in response.headers
        assert "X-Auth-Method" not in response.headers


# --- the per-user cap ------------------------------------------------------------------------------


async def test_the_sixth_key_is_409_until_one_is_revoked(client):
    user = await guest(client)
    keys = [await create_key(client, user["headers"], name=f"k{n}") for n in range(5)]
    response = await client.post("/auth/api-keys", json={"name": "sixth"}, headers=user["headers"])
    error = await error_of(response, 409)
    assert error["code"] == "api_key_limit_reached"
    assert response.headers["x-should-retry"] == "false"
    # Another user has their own budget.
    other = await guest(client)
    await create_key(client, other["headers"])
    # Revoking frees a slot, for exactly one more key.
    assert (await client.delete(f"/auth/api-keys/{keys[0]['id']}", headers=user["headers"])).status == 204
    await create_key(client, user["headers"], name="sixth")
    await error_of(await client.post("/auth/api-keys", json={"name": "seventh"}, headers=user["headers"]), 409)


async def test_expired_keys_do_not_count_against_the_cap(client, database_dsn):
    user = await guest(client)
    keys = [await create_key(client, user["headers"], name=f"k{n}") for n in range(5)]
    query(database_dsn, "UPDATE llm_api.api_keys SET expires_at = now() - interval '1 second' WHERE id = %s", keys[0]["id"])
    await create_key(client, user["headers"], name="replacement")


async def test_concurrent_creates_respect_the_cap(client):
    user = await guest(client)
    responses = await asyncio.gather(
        *(client.post("/auth/api-keys", json={"name": f"race-{n}"}, headers=user["headers"]) for n in range(10))
    )
    statuses = sorted(response.status for response in responses)
    assert statuses == [201] * 5 + [409] * 5
    for response in responses:
        if response.status == 409:
            assert (await error_of(response, 409))["code"] == "api_key_limit_reached"
    assert len(await list_keys(client, user["headers"])) == 5


# --- revocation ------------------------------------------------------------------------------------


async def test_revoked_key_is_refused_and_listed_as_revoked(client):
    user = await guest(client)
    key = await create_key(client, user["headers"])
    assert (await client.get("/auth/me", headers={"X-API-Key": key["key"]})).status == 200
    before = time.time()
    response = await client.delete(f"/auth/api-keys/{key['id']}", headers=user["headers"])
    assert response.status == 204
    assert await response.read() == b""
    for headers in ({"X-API-Key": key["key"]}, {"Authorization": f"Bearer {key['key']}"}):
        error = await error_of(await client.get("/auth/me", headers=headers), 401)
        assert error["code"] == "invalid_api_key"
    entry = listed(await list_keys(client, user["headers"]), key["id"])
    assert entry["status"] == "revoked"
    assert entry["revoked_at"] is not None and abs(entry["revoked_at"] - before) < SLACK
    # Deleting again is fine for the owner, and keeps the first revocation time.
    again = await client.delete(f"/auth/api-keys/{key['id']}", headers=user["headers"])
    assert again.status == 204
    assert listed(await list_keys(client, user["headers"]), key["id"])["revoked_at"] == entry["revoked_at"]


async def test_a_key_can_be_revoked_with_itself(client):
    user = await guest(client)
    key = await create_key(client, user["headers"])
    response = await client.delete(f"/auth/api-keys/{key['id']}", headers={"X-API-Key": key["key"]})
    assert response.status == 204
    await error_of(await client.get("/auth/me", headers={"X-API-Key": key["key"]}), 401)


async def test_another_users_key_is_404_and_stays_usable(client):
    alice, mallory = await guest(client), await guest(client)
    key = await create_key(client, alice["headers"])
    error = await error_of(await client.delete(f"/auth/api-keys/{key['id']}", headers=mallory["headers"]), 404)
    assert error["param"] == "key_id"
    assert (await client.get("/auth/me", headers={"X-API-Key": key["key"]})).status == 200
    assert listed(await list_keys(client, alice["headers"]), key["id"])["status"] == "active"


async def test_unknown_key_id_is_404(client):
    user = await guest(client)
    error = await error_of(await client.delete("/auth/api-keys/key_doesnotexist0000", headers=user["headers"]), 404)
    assert error["code"] == "not_found"


@pytest.mark.parametrize("key_id", ["..%2Fx", "key_UPPER", "key_", "sk_abc", "key_" + "a" * 65])
async def test_malformed_key_id_is_400(client, key_id):
    user = await guest(client)
    error = await error_of(await client.delete(f"/auth/api-keys/{key_id}", headers=user["headers"]), 400)
    assert error["param"] == "key_id"


async def test_revoking_needs_credentials(client):
    await error_of(await client.delete("/auth/api-keys/key_abc"), 401)


# --- expiry ----------------------------------------------------------------------------------------


async def test_expired_key_is_401_and_listed_as_expired(client, database_dsn):
    user = await guest(client)
    key = await create_key(client, user["headers"])
    assert (await client.get("/auth/me", headers={"X-API-Key": key["key"]})).status == 200
    query(database_dsn, "UPDATE llm_api.api_keys SET expires_at = now() - interval '1 second' WHERE id = %s", key["id"])
    for headers in ({"X-API-Key": key["key"]}, {"Authorization": f"Bearer {key['key']}"}):
        error = await error_of(await client.get("/auth/me", headers=headers), 401)
        assert error["code"] == "invalid_api_key"
    assert listed(await list_keys(client, user["headers"]), key["id"])["status"] == "expired"


# --- request validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body,param",
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x", "expires_in_days": 0}, "expires_in_days"),
        ({"name": "x", "expires_in_days": 3651}, "expires_in_days"),
        ({"name": "x", "key": "sk_mine"}, "key"),
    ],
)
async def test_invalid_create_bodies_are_400(client, body, param):
    user = await guest(client)
    error = await error_of(await client.post("/auth/api-keys", json=body, headers=user["headers"]), 400)
    assert error["param"] == param
    assert await list_keys(client, user["headers"]) == []


async def test_creating_needs_credentials(client):
    await error_of(await client.post("/auth/api-keys", json={"name": "laptop"}), 401)
