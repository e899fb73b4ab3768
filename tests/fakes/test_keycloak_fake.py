"""The fake Keycloak, exercised over real HTTP the way a Keycloak client uses the real one."""

from __future__ import annotations

import time

import aiohttp
import jwt
import pytest

from tests.fakes.keycloak import FakeKeycloak

OIDC = "protocol/openid-connect"


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def token_request(http: aiohttp.ClientSession, kc: FakeKeycloak, realm: str | None = None, **form: str):
    """POST a form to the token endpoint; (status, JSON body, headers)."""
    async with http.post(f"{kc.base_url}/realms/{realm or kc.realm}/{OIDC}/token", data=form) as resp:
        return resp.status, await resp.json(), resp.headers


async def password_grant(http, kc, username: str, password: str, **extra: str) -> dict:
    status, body, _ = await token_request(
        http, kc, grant_type="password", client_id=kc.client_id, username=username, password=password, **extra
    )
    assert status == 200, body
    return body


async def served_jwks(http, kc, realm: str | None = None) -> jwt.PyJWKSet:
    async with http.get(f"{kc.base_url}/realms/{realm or kc.realm}/{OIDC}/certs") as resp:
        assert resp.status == 200
        return jwt.PyJWKSet.from_dict(await resp.json())


async def verify(http, kc, token: str, realm: str | None = None, audience: str | list[str] = "account") -> dict:
    """Verify a token as a relying party does: key by kid from the served JWKS, RS256 only, iss and aud."""
    key = (await served_jwks(http, kc, realm))[jwt.get_unverified_header(token)["kid"]]
    issuer = f"{kc.base_url}/realms/{realm or kc.realm}"
    return jwt.decode(token, key, algorithms=["RS256"], audience=audience, issuer=issuer)


async def admin_token(http, kc, how: str) -> str:
    if how == "master-admin-cli":
        status, body, _ = await token_request(
            http,
            kc,
            realm="master",
            grant_type="password",
            client_id="admin-cli",
            username=kc.admin_user,
            password=kc.admin_password,
        )
    else:
        status, body, _ = await token_request(
            http, kc, grant_type="client_credentials", client_id=kc.backend_client_id, client_secret=kc.backend_client_secret
        )
    assert status == 200, body
    return body["access_token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- discovery and keys ----------------------------------------------------------------------------------------------


async def test_discovery_and_jwks_are_served_as_keycloak_serves_them(kc, http):
    async with http.get(f"{kc.base_url}/realms/jan/.well-known/openid-configuration") as resp:
        assert resp.status == 200
        discovery = await resp.json()
    assert discovery["issuer"] == kc.issuer == f"{kc.base_url}/realms/jan"
    assert discovery["jwks_uri"] == kc.jwks_url
    assert discovery["token_endpoint"] == f"{kc.issuer}/{OIDC}/token"
    assert discovery["end_session_endpoint"] == f"{kc.issuer}/{OIDC}/logout"

    async with http.get(kc.jwks_url) as resp:
        keys = (await resp.json())["keys"]
    signing = [k for k in keys if k["use"] == "sig"]
    assert [k["kid"] for k in signing] == [kc.current_kid]
    assert {(k["kty"], k["alg"]) for k in signing} == {("RSA", "RS256")}
    assert all("=" not in k["n"] + k["e"] and k["e"] == "AQAB" for k in keys)
    assert [k["alg"] for k in keys if k["use"] == "enc"] == ["RSA-OAEP"]  # a stock realm also lists its enc key

    async with http.get(f"{kc.base_url}/realms/nope/{OIDC}/certs") as resp:
        assert (resp.status, await resp.json()) == (404, {"error": "Realm does not exist"})


# -- password grant --------------------------------------------------------------------------------------------------


async def test_password_grant_gives_a_token_that_verifies_against_the_served_jwks(kc, http):
    user_id = kc.add_user(
        "Alice", "s3cret", attributes={"guest": "false"}, email="Alice@Example.com", first_name="Alice", last_name="Liddell"
    )
    status, body, headers = await token_request(
        http, kc, grant_type="password", client_id="jan-client", username="alice", password="s3cret", scope="openid"
    )
    assert status == 200, body
    assert headers["Cache-Control"] == "no-store"
    assert body["token_type"] == "Bearer"
    assert (body["expires_in"], body["refresh_expires_in"], body["not-before-policy"]) == (300, 1800, 0)
    assert body["scope"] == "openid profile email"
    assert jwt.get_unverified_header(body["access_token"]) == {"alg": "RS256", "typ": "JWT", "kid": kc.current_kid}

    claims = await verify(http, kc, body["access_token"])
    assert claims["iss"] == kc.issuer
    assert claims["aud"] == "account"
    assert claims["sub"] == user_id
    assert (claims["typ"], claims["azp"]) == ("Bearer", "jan-client")
    assert claims["sid"] == claims["session_state"] == body["session_state"]
    assert claims["exp"] - claims["iat"] == 300
    assert claims["preferred_username"] == "alice"  # Keycloak lowercases usernames and e-mails
    assert (claims["email"], claims["email_verified"]) == ("alice@example.com", False)
    assert (claims["name"], claims["given_name"], claims["family_name"]) == ("Alice Liddell", "Alice", "Liddell")
    assert claims["realm_access"]["roles"] == ["default-roles-jan", "offline_access", "uma_authorization", "user"]
    assert claims["resource_access"] == {"account": {"roles": ["manage-account", "manage-account-links", "view-profile"]}}
    assert claims["scope"] == "openid profile email"
    assert claims["guest"] == "false"

    id_claims = await verify(http, kc, body["id_token"], audience="jan-client")
    assert (id_claims["typ"], id_claims["sub"], id_claims["sid"]) == ("ID", user_id, claims["sid"])

    body = await password_grant(http, kc, "alice", "s3cret")  # no scope asked: no openid, no id_token
    assert body["scope"] == "profile email" and "id_token" not in body
    assert len(kc.sessions("alice")) == 2


async def test_password_grant_errors_are_keycloaks(kc, http):
    kc.add_user("bob", "right")
    kc.add_user("carol", "right", enabled=False)
    form = {"grant_type": "password", "client_id": "jan-client"}
    cases = [
        ({**form, "username": "bob", "password": "wrong"}, 401, "invalid_grant", "Invalid user credentials"),
        ({**form, "username": "nobody", "password": "right"}, 401, "invalid_grant", "Invalid user credentials"),
        ({**form, "username": "carol", "password": "right"}, 400, "invalid_grant", "Account disabled"),
        (
            {**form, "client_id": "nope", "username": "bob", "password": "right"},
            401,
            "invalid_client",
            "Invalid client or Invalid client credentials",
        ),
        (
            {**form, "client_id": "backend", "client_secret": "wrong", "username": "bob", "password": "right"},
            401,
            "unauthorized_client",
            "Invalid client or Invalid client credentials",
        ),
        (
            {**form, "username": "bob", "password": "right", "scope": "openid offline_access"},
            400,
            "invalid_scope",
            "Invalid scopes: openid offline_access",
        ),
        (
            {"client_id": "jan-client", "username": "bob", "password": "right"},
            400,
            "invalid_request",
            "Missing form parameter: grant_type",
        ),
        ({**form, "grant_type": "implicit"}, 400, "unsupported_grant_type", "Unsupported grant_type"),
        (
            {"grant_type": "client_credentials", "client_id": "jan-client"},
            401,
            "unauthorized_client",
            "Public client not allowed to retrieve service account",
        ),
    ]
    for data, status, error, description in cases:
        got = await token_request(http, kc, **data)
        assert got[:2] == (status, {"error": error, "error_description": description}), data
    assert kc.sessions("bob") == []

    async with http.post(f"{kc.base_url}/realms/jan/{OIDC}/token", json=form) as resp:
        assert resp.status == 415  # Keycloak's token endpoint only consumes form-encoded bodies


# -- refresh and logout ----------------------------------------------------------------------------------------------


async def refresh(http, kc, refresh_token: str, client_id: str = "jan-client"):
    status, body, _ = await token_request(http, kc, grant_type="refresh_token", client_id=client_id, refresh_token=refresh_token)
    return status, body


async def test_refresh_tokens_rotate_and_a_replay_kills_the_family(kc, http):
    kc.add_user("dave", "pw")
    first = await password_grant(http, kc, "dave", "pw")
    first_claims = await verify(http, kc, first["access_token"])

    status, second = await refresh(http, kc, first["refresh_token"])
    assert status == 200, second
    assert second["refresh_token"] != first["refresh_token"]
    claims = await verify(http, kc, second["access_token"])
    assert claims["sid"] == first_claims["sid"] and claims["jti"] != first_claims["jti"]
    assert jwt.get_unverified_header(second["refresh_token"])["alg"] == "HS512"  # opaque to clients

    assert await refresh(http, kc, first["refresh_token"]) == (
        400,
        {"error": "invalid_grant", "error_description": "Maximum allowed refresh token reuse exceeded"},
    )
    # Keycloak then detaches the client from the session: the legitimately rotated token dies too.
    assert await refresh(http, kc, second["refresh_token"]) == (
        400,
        {"error": "invalid_grant", "error_description": "Session doesn't have required client"},
    )

    # In a fresh session: replaying a token older than the last one used is a "Stale token".
    r1 = (await password_grant(http, kc, "dave", "pw"))["refresh_token"]
    status, body = await refresh(http, kc, r1)
    status, body = await refresh(http, kc, body["refresh_token"])
    assert status == 200
    assert await refresh(http, kc, r1) == (400, {"error": "invalid_grant", "error_description": "Stale token"})

    assert await refresh(http, kc, "garbage") == (400, {"error": "invalid_grant", "error_description": "Invalid refresh token"})
    r = (await password_grant(http, kc, "dave", "pw"))["refresh_token"]
    assert await refresh(http, kc, r, client_id="admin-cli") == (
        400,
        {"error": "invalid_grant", "error_description": "Invalid refresh token. Token client and authorized client don't match"},
    )


async def test_refresh_tokens_are_reusable_when_revocation_is_off(http):
    kc = FakeKeycloak(revoke_refresh_tokens=False, access_token_ttl=60)
    await kc.start()
    try:
        kc.add_user("erin", "pw")
        token = (await password_grant(http, kc, "erin", "pw"))["refresh_token"]
        for _ in range(2):
            status, body = await refresh(http, kc, token)
            assert status == 200 and body["expires_in"] == 60
    finally:
        await kc.stop()


async def test_logout_ends_the_session(kc, http):
    kc.add_user("frank", "pw")
    tokens = await password_grant(http, kc, "frank", "pw")
    url = f"{kc.base_url}/realms/jan/{OIDC}/logout"
    for _ in range(2):  # a second logout of the same session is still a 204
        async with http.post(url, data={"client_id": "jan-client", "refresh_token": tokens["refresh_token"]}) as resp:
            assert resp.status == 204
            assert await resp.read() == b""
    assert kc.sessions("frank") == []
    assert await refresh(http, kc, tokens["refresh_token"]) == (
        400,
        {"error": "invalid_grant", "error_description": "Session not active"},
    )
    async with http.post(url, data={"client_id": "jan-client", "refresh_token": "garbage"}) as resp:
        assert (resp.status, await resp.json()) == (400, {"error": "invalid_grant", "error_description": "Invalid refresh token"})


# -- admin REST: guest provisioning as a client does it --------------------------------------------------------------


@pytest.mark.parametrize("how", ["master-admin-cli", "client-credentials"])
async def test_guest_provisioning_end_to_end(kc, http, how):
    admin = await admin_token(http, kc, how)
    base = f"{kc.base_url}/admin/realms/jan"
    username = "guest-0b3c6c1e-6c1f-4a53-9d0e-0d4f4a1b2c3d"
    rep = {"username": username, "email": f"{username}@temp.jan.ai", "enabled": True, "attributes": {"guest": ["true"]}}
    async with http.post(f"{base}/users", json=rep, headers=bearer(admin)) as resp:
        assert resp.status == 201
        assert await resp.read() == b""
        location = resp.headers["Location"]
    assert location.startswith(f"{base}/users/")
    user_id = location.rsplit("/", 1)[1]

    async with http.get(f"{base}/users/{user_id}", headers=bearer(admin)) as resp:
        user = await resp.json()
    assert (user["id"], user["username"], user["enabled"]) == (user_id, username, True)
    assert user["attributes"] == {"guest": ["true"]}
    assert isinstance(user["createdTimestamp"], int)

    async with http.get(f"{base}/roles/guest", headers=bearer(admin)) as resp:
        role = await resp.json()
    assert {k: role[k] for k in ("name", "composite", "clientRole", "containerId")} == {
        "name": "guest",
        "composite": False,
        "clientRole": False,
        "containerId": "jan",
    }
    async with http.post(f"{base}/users/{user_id}/role-mappings/realm", json=[role], headers=bearer(admin)) as resp:
        assert resp.status == 204
    async with http.put(
        f"{base}/users/{user_id}/reset-password",
        headers=bearer(admin),
        json={"type": "password", "value": "guest-pw", "temporary": False},
    ) as resp:
        assert resp.status == 204
    async with http.get(f"{base}/users/{user_id}/role-mappings/realm", headers=bearer(admin)) as resp:
        assert {r["name"] for r in await resp.json()} == {"default-roles-jan", "guest"}

    body = await password_grant(http, kc, username, "guest-pw")
    claims = await verify(http, kc, body["access_token"])
    assert claims["sub"] == user_id
    assert "guest" in claims["realm_access"]["roles"]
    assert claims["guest"] == "true"
    assert claims["email"] == f"{username}@temp.jan.ai"


async def test_admin_tokens_of_the_two_kinds_carry_admin_rights(kc, http):
    claims = await verify(http, kc, await admin_token(http, kc, "client-credentials"), audience="account")
    assert claims["preferred_username"] == "service-account-backend"
    assert (claims["azp"], claims["client_id"]) == ("backend", "backend")
    assert "manage-users" in claims["resource_access"]["realm-management"]["roles"]
    assert "sid" not in claims  # client_credentials opens no session

    claims = await verify(http, kc, await admin_token(http, kc, "master-admin-cli"), realm="master")
    assert claims["iss"] == f"{kc.base_url}/realms/master" and "admin" in claims["realm_access"]["roles"]


async def test_admin_calls_need_an_admin_token(kc, http):
    base = f"{kc.base_url}/admin/realms/jan"
    kc.add_user("grace", "pw", realm_roles=("user", "admin"))  # the app's admin role is no Keycloak admin right
    user_token = (await password_grant(http, kc, "grace", "pw"))["access_token"]
    expired = kc.sign(
        {
            **jwt.decode(await admin_token(http, kc, "client-credentials"), options={"verify_signature": False}),
            "exp": int(time.time()) - 10,
        }
    )
    for headers, status, body in [
        ({}, 401, {"error": "HTTP 401 Unauthorized"}),
        (bearer("not-a-jwt"), 401, {"error": "HTTP 401 Unauthorized"}),
        (bearer(expired), 401, {"error": "HTTP 401 Unauthorized"}),
        (bearer(user_token), 403, {"error": "HTTP 403 Forbidden"}),
    ]:
        async with http.post(f"{base}/users", json={"username": "x"}, headers=headers) as resp:
            assert (resp.status, await resp.json()) == (status, body)
        async with http.get(f"{base}/roles/guest", headers=headers) as resp:
            assert resp.status == status
    assert [u["username"] for u in kc.users.values()] == ["service-account-backend", "grace"]

    # A master admin token stops working once its session is logged out.
    status, tokens, _ = await token_request(
        http, kc, realm="master", grant_type="password", client_id="admin-cli", username="admin", password="admin"
    )
    async with http.get(f"{base}/roles/guest", headers=bearer(tokens["access_token"])) as resp:
        assert resp.status == 200
    async with http.post(
        f"{kc.base_url}/realms/master/{OIDC}/logout", data={"client_id": "admin-cli", "refresh_token": tokens["refresh_token"]}
    ) as resp:
        assert resp.status == 204
    async with http.get(f"{base}/roles/guest", headers=bearer(tokens["access_token"])) as resp:
        assert (resp.status, await resp.json()) == (401, {"error": "HTTP 401 Unauthorized"})


async def test_admin_errors_are_keycloaks(kc, http):
    admin = bearer(await admin_token(http, kc, "client-credentials"))
    base = f"{kc.base_url}/admin/realms/jan"
    kc.add_user("heidi", "pw", email="heidi@example.com")
    async with http.post(f"{base}/users", json={"username": "HEIDI"}, headers=admin) as resp:
        assert (resp.status, await resp.json()) == (409, {"errorMessage": "User exists with same username"})
    async with http.post(f"{base}/users", json={"username": "h2", "email": "heidi@example.com"}, headers=admin) as resp:
        assert (resp.status, await resp.json()) == (409, {"errorMessage": "User exists with same email"})
    async with http.get(f"{base}/users/00000000-0000-0000-0000-000000000000", headers=admin) as resp:
        assert (resp.status, await resp.json()) == (404, {"error": "User not found"})
    async with http.get(f"{base}/roles/superhero", headers=admin) as resp:
        assert (resp.status, await resp.json()) == (404, {"error": "Could not find role"})
    user_id = next(u["id"] for u in kc.users.values() if u["username"] == "heidi")
    async with http.post(
        f"{base}/users/{user_id}/role-mappings/realm", headers=admin, json=[{"name": "guest", "id": "made-up"}]
    ) as resp:
        assert (resp.status, await resp.json()) == (404, {"error": "Role not found"})
    async with http.put(
        f"{base}/users/{user_id}/reset-password", json={"type": "password", "value": "  "}, headers=admin
    ) as resp:
        assert (resp.status, await resp.json()) == (400, {"error": "Empty password not allowed"})
    async with http.get(f"{kc.base_url}/admin/realms/jan/nonsense", headers=admin) as resp:
        assert resp.status == 404


async def test_admin_created_users_follow_keycloak_defaults(kc, http):
    admin = bearer(await admin_token(http, kc, "master-admin-cli"))
    base = f"{kc.base_url}/admin/realms/jan"
    async with http.post(f"{base}/users", json={"username": "ivan"}, headers=admin) as resp:
        user_id = resp.headers["Location"].rsplit("/", 1)[1]
    async with http.put(
        f"{base}/users/{user_id}/reset-password", headers=admin, json={"type": "password", "value": "pw", "temporary": True}
    ) as resp:
        assert resp.status == 204
    # Without "enabled": true the user is created disabled.
    status, body, _ = await token_request(http, kc, grant_type="password", client_id="jan-client", username="ivan", password="pw")
    assert (status, body["error_description"]) == (400, "Account disabled")
    async with http.put(f"{base}/users/{user_id}", json={"enabled": True}, headers=admin) as resp:
        assert resp.status == 204
    # A temporary password leaves the UPDATE_PASSWORD required action, which a password grant cannot do.
    status, body, _ = await token_request(http, kc, grant_type="password", client_id="jan-client", username="ivan", password="pw")
    assert (status, body["error_description"]) == (400, "Account is not fully set up")
    assert kc.users[user_id]["required_actions"] == ["UPDATE_PASSWORD"]


async def test_user_update_replaces_attributes_as_keycloak_does(kc, http):
    admin = bearer(await admin_token(http, kc, "client-credentials"))
    user_id = kc.add_user(
        "judy", "pw", attributes={"guest": ["true"], "api_keys": ["k1:h1"]}, email="judy@temp.jan.ai", first_name="Judy"
    )
    url = f"{kc.base_url}/admin/realms/jan/users/{user_id}"
    async with http.put(url, json={"emailVerified": True}, headers=admin) as resp:  # no attributes: a patch
        assert resp.status == 204
    async with http.get(url, headers=admin) as resp:
        user = await resp.json()
    assert (user["email"], user["firstName"], user["emailVerified"]) == ("judy@temp.jan.ai", "Judy", True)
    assert user["attributes"] == {"guest": ["true"], "api_keys": ["k1:h1"]}

    # With attributes: they replace the set, and e-mail/names not repeated are cleared (jan-server #255).
    async with http.put(url, json={"attributes": {"guest": ["false"]}}, headers=admin) as resp:
        assert resp.status == 204
    async with http.get(url, headers=admin) as resp:
        user = await resp.json()
    assert user["attributes"] == {"guest": ["false"]}
    assert "email" not in user and "firstName" not in user

    claims = await verify(http, kc, (await password_grant(http, kc, "judy", "pw"))["access_token"])
    assert claims["guest"] == "false" and "email" not in claims and "name" not in claims


# -- keys and test helpers -------------------------------------------------------------------------------------------


async def test_rotated_keys_stay_verifiable_until_dropped(kc, http):
    kc.add_user("ken", "pw")
    old_kid = kc.current_kid
    old_token = (await password_grant(http, kc, "ken", "pw"))["access_token"]
    new_kid = kc.rotate_key()
    assert new_kid != old_kid == jwt.get_unverified_header(old_token)["kid"]
    new_token = (await password_grant(http, kc, "ken", "pw"))["access_token"]
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid

    kc.reset_requests()
    assert (await verify(http, kc, old_token))["preferred_username"] == "ken"
    assert (await verify(http, kc, new_token))["preferred_username"] == "ken"
    assert kc.requests == [("GET", "/realms/jan/protocol/openid-connect/certs")] * 2

    kc.drop_old_keys()
    jwks = await served_jwks(http, kc)
    assert [k.key_id for k in jwks] == [new_kid]
    with pytest.raises(KeyError):
        jwks[old_kid]
    assert (await verify(http, kc, new_token))["sub"]


async def test_issue_token_and_sign(kc, http):
    user_id = kc.add_user("leo", "pw", realm_roles=("guest",), attributes={"guest": ["true"]})
    claims = await verify(http, kc, kc.issue_token("leo", aud=["account", "llm-api"], email_verified=None))
    assert claims["sub"] == user_id and claims["guest"] == "true"
    assert claims["realm_access"]["roles"] == ["default-roles-jan", "guest", "offline_access", "uma_authorization"]
    assert "email_verified" not in claims and claims["aud"] == ["account", "llm-api"]
    assert kc.sessions("leo") == [claims["sid"]]

    forged = kc.sign({"sub": user_id, "iss": kc.issuer}, kid="unknown-kid", headers={"x-test": "1"})
    assert jwt.get_unverified_header(forged)["kid"] == "unknown-kid"
    with pytest.raises(KeyError):
        (await served_jwks(http, kc))["unknown-kid"]
    signed = kc.sign({"sub": user_id, "iss": kc.issuer, "aud": "account"})
    assert (await verify(http, kc, signed))["sub"] == user_id
