"""Forged, broken and misdirected access tokens: each one is a 401 with the OpenAI envelope, and none
of them leaves a user behind.

Keycloak mode runs against the fake Keycloak, which signs whatever claims a case needs with the
realm's real key; that exercises the verifier the built-in issuer uses too (``llm_api/auth/tokens.py``).
A few cases are repeated against the built-in issuer itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Callable

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import RSAAlgorithm

from llm_api.app import create_app
from tests.api.test_error_surface import error_of
from tests.conftest import test_settings
from tests.fakes.keycloak import FakeKeycloak
from tests.sql import query

PROTECTED = ["/auth/me", "/v1/models"]
BUILTIN_ISSUER = "llm-api"


# --- helpers -------------------------------------------------------------------------------------------------


def b64url(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value: object) -> str:
    return b64url(json.dumps(value, separators=(",", ":")))


def unsigned(header: dict, claims: dict, signature: str = "") -> str:
    return f"{b64url_json(header)}.{b64url_json(claims)}.{signature}"


def hs256(header: dict, claims: dict, secret: bytes) -> str:
    """An HS256 token built by hand (PyJWT refuses to use a public key as an HMAC secret)."""
    signing_input = f"{b64url_json(header)}.{b64url_json(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def public_key_secrets(jwk: dict) -> dict[str, bytes]:
    """The forms in which a verifier could mistake the RSA public key for an HMAC secret."""
    public = RSAAlgorithm.from_jwk(json.dumps(jwk))
    return {
        "spki-pem": public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        "pkcs1-pem": public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
        "jwk-json": json.dumps(jwk).encode(),
        "der": public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
    }


def access_claims(issuer: str, subject: str, **overrides) -> dict:
    """Claims as Keycloak puts them in a jan-client access token; an override of None removes the claim."""
    now = int(time.time())
    claims = {
        "exp": now + 300,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "iss": issuer,
        "aud": "account",
        "sub": subject,
        "typ": "Bearer",
        "azp": "jan-client",
        "realm_access": {"roles": ["user"]},
        "preferred_username": f"user-{subject[-8:]}",
    }
    for name, value in overrides.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def db_count(dsn: str, sql: str, *args) -> int:
    return query(dsn, sql, *args)[0][0]


def rows_for_subject(dsn: str, subject: str) -> int:
    return db_count(dsn, "SELECT count(*) FROM llm_api.users WHERE subject = %s", subject)


def rows_for_issuer(dsn: str, issuer: str) -> int:
    return db_count(dsn, "SELECT count(*) FROM llm_api.users WHERE issuer = %s", issuer)


async def assert_rejected(client, token: str | None, code: str) -> None:
    """401 with the envelope, and nothing else in the body, on every protected route."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    for path in PROTECTED:
        response = await client.get(path, headers=headers)
        error = await error_of(response, 401)
        assert error["type"] == "authentication_error", (path, error)
        assert error["code"] == code, (path, error)
        assert "X-Principal-Id" not in response.headers


async def assert_accepted(client, token: str) -> dict:
    for path in PROTECTED:
        response = await client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert response.status == 200, (path, await response.text())
    response = await client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    return await response.json()


# --- Keycloak mode --------------------------------------------------------------------------------------------


@pytest.fixture
async def api(aiohttp_client, database_dsn, kc):
    return await aiohttp_client(create_app(test_settings(database_dsn, KEYCLOAK_BASE_URL=kc.base_url)))


def current_jwk(kc: FakeKeycloak) -> dict:
    return next(key for key in kc.jwks()["keys"] if key["kid"] == kc.current_kid)


def tampered(token: str, **changes) -> str:
    """The same header and signature around a payload with some claims changed."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    return f"{header}.{b64url_json(claims)}.{signature}"


# Each case: (kc, issuer, subject) -> (token, expected code). Every signed one carries `subject`.
Case = Callable[[FakeKeycloak, str, str], tuple[str, str]]


def _alg_none(alg: str) -> Case:
    def make(kc, iss, sub):
        return unsigned({"alg": alg, "typ": "JWT", "kid": kc.current_kid}, access_claims(iss, sub)), "invalid_token"

    return make


def _hs256_with_public_key(form: str) -> Case:
    def make(kc, iss, sub):
        secret = public_key_secrets(current_jwk(kc))[form]
        token = hs256({"alg": "HS256", "typ": "JWT", "kid": kc.current_kid}, access_claims(iss, sub), secret)
        return token, "invalid_token"

    return make


def _signed(code: str = "invalid_token", **overrides) -> Case:
    """Properly signed by the realm's current key; a callable override gets the time the case runs at."""

    def make(kc, iss, sub):
        now = time.time()
        claims = access_claims(iss, sub, **{k: v(now) if callable(v) else v for k, v in overrides.items()})
        return kc.sign(claims), code

    return make


def _rs256_without_signature(kc, iss, sub):
    header, payload, _ = kc.sign(access_claims(iss, sub)).split(".")
    return f"{header}.{payload}.", "invalid_token"


def _tampered_subject(kc, iss, sub):
    original = kc.sign(access_claims(iss, f"victim-{uuid.uuid4()}"))
    return tampered(original, sub=sub), "invalid_token"


def _tampered_roles(kc, iss, sub):
    original = kc.sign(access_claims(iss, sub))
    return tampered(original, realm_access={"roles": ["admin"]}), "invalid_token"


def _unknown_kid(kc, iss, sub):
    return kc.sign(access_claims(iss, sub), kid=secrets.token_urlsafe(16)), "invalid_token"


def _kid_header(kid: object) -> Case:
    """Signed by the realm's current key under a header PyJWT would not write (kid absent, null, a number)."""

    def make(kc, iss, sub):
        header = {"alg": "RS256", "typ": "JWT"} if kid == "absent" else {"alg": "RS256", "typ": "JWT", "kid": kid}
        signing_input = f"{b64url_json(header)}.{b64url_json(access_claims(iss, sub))}"
        private = kc._realms[kc.realm].current_key.private  # the fake's key object, as in _enc_key
        signature = RSAAlgorithm(RSAAlgorithm.SHA256).sign(signing_input.encode(), private)
        return f"{signing_input}.{b64url(signature)}", "invalid_token"

    return make


def _enc_key(kc, iss, sub):
    """Signed with the realm's encryption key, which the JWKS lists with ``use: enc``."""
    enc = kc._realms[kc.realm].enc_key  # the fake's own key object: only a test can reach its private half
    return jwt.encode(access_claims(iss, sub), enc.private, algorithm="RS256", headers={"kid": enc.kid}), "invalid_token"


def _other_realm_key(kc, iss, sub):
    """Right claims, signed by a key this realm never published (the fake's master realm)."""
    master = kc._get_realm("master")
    key = master.current_key
    return jwt.encode(access_claims(iss, sub), key.private, algorithm="RS256", headers={"kid": key.kid}), "invalid_token"


SIGNED_CASES: dict[str, Case] = {
    "alg none": _alg_none("none"),
    "alg None": _alg_none("None"),
    "alg NONE": _alg_none("NONE"),
    "RS256 header without signature": _rs256_without_signature,
    "HS256 keyed with the PEM public key": _hs256_with_public_key("spki-pem"),
    "HS256 keyed with the PKCS1 PEM public key": _hs256_with_public_key("pkcs1-pem"),
    "HS256 keyed with the JWK": _hs256_with_public_key("jwk-json"),
    "HS256 keyed with the DER public key": _hs256_with_public_key("der"),
    "expired beyond the skew": _signed("token_expired", exp=lambda now: int(now) - 120, iat=lambda now: int(now) - 420),
    "nbf beyond the skew": _signed(nbf=lambda now: int(now) + 120),
    "iat far in the future": _signed(iat=lambda now: int(now) + 3600, exp=lambda now: int(now) + 7200),
    "no exp": _signed(exp=None),
    "wrong iss": _signed(iss="http://127.0.0.1:1/realms/jan"),
    "other realm's iss": lambda kc, iss, sub: (kc.sign(access_claims(f"{kc.base_url}/realms/master", sub)), "invalid_token"),
    "wrong aud": _signed(aud="other-audience"),
    "aud list without account": _signed(aud=["jan-client", "broker"]),
    "no aud": _signed(aud=None),
    "other client (azp)": _signed(azp="admin-console"),
    "tampered sub": _tampered_subject,
    "tampered roles": _tampered_roles,
    "unknown kid": _unknown_kid,
    "no kid": _kid_header("absent"),
    "kid null": _kid_header(None),
    "kid a number": _kid_header(1),
    "signed with the enc key": _enc_key,
    "signed with another realm's key": _other_realm_key,
}


@pytest.mark.parametrize("case", list(SIGNED_CASES))
async def test_forged_or_misdirected_token_is_401_and_creates_no_user(api, kc, database_dsn, case):
    subject = f"forged-{uuid.uuid4()}"
    token, code = SIGNED_CASES[case](kc, kc.issuer, subject)
    before = rows_for_issuer(database_dsn, kc.issuer)

    await assert_rejected(api, token, code)

    assert rows_for_subject(database_dsn, subject) == 0
    assert rows_for_issuer(database_dsn, kc.issuer) == before


GARBAGE = {
    "word": "abc",
    "three letters": "a.b.c",
    "empty segments": "..",
    "empty header": ".eyJzdWIiOiJ4In0.c2ln",
    "empty payload and signature": "eyJhbGciOiJSUzI1NiJ9..",
    "non-base64": "!!!.@@@.###",
    "base64 that is not JSON": f"{b64url('not json')}.{b64url('nor this')}.{b64url('sig')}",
    "header that is a JSON list": f"{b64url_json(['RS256'])}.{b64url_json({'sub': 'x'})}.c2ln",
    "payload not JSON": f"{b64url_json({'alg': 'RS256', 'kid': 'k'})}.%%%%.c2ln",
    "two segments": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0",
    "four segments": "a.b.c.d",
    "8 KB string": "A" * 8000,
    "100 KB string": "A" * 100_000,
    "100 KB JWT-shaped": f"{b64url_json({'alg': 'RS256', 'kid': 'k'})}.{b64url('x' * 75_000)}.{b64url('s' * 256)}",
}


@pytest.mark.parametrize("case", list(GARBAGE))
async def test_garbage_token_is_401(api, kc, database_dsn, case):
    before = rows_for_issuer(database_dsn, kc.issuer)
    await assert_rejected(api, GARBAGE[case], "invalid_token")
    assert rows_for_issuer(database_dsn, kc.issuer) == before


async def test_no_credentials_is_401(api):
    await assert_rejected(api, None, "missing_credentials")
    response = await api.get("/auth/me")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "control",
    [
        "as issued",
        "aud list with account",
        "expired within the skew",
        "nbf within the skew",
        "no azp",
    ],
)
async def test_a_valid_control_token_passes(api, kc, database_dsn, control):
    """The same fake and the same claims as the forgeries: the rejections above are not vacuous."""
    subject = f"control-{uuid.uuid4()}"
    now = int(time.time())
    overrides = {
        "as issued": {},
        "aud list with account": {"aud": ["broker", "account"]},
        "expired within the skew": {"exp": now - 20, "iat": now - 320},
        "nbf within the skew": {"nbf": now + 20},
        "no azp": {"azp": None},
    }[control]
    principal = await assert_accepted(api, kc.sign(access_claims(kc.issuer, subject, **overrides)))
    assert principal["subject"] == subject
    assert principal["issuer"] == kc.issuer
    assert principal["auth_method"] == "jwt"
    assert rows_for_subject(database_dsn, subject) == 1


async def test_a_token_issued_by_the_fake_passes(api, kc, database_dsn):
    subject = kc.add_user("carol", "pw")
    principal = await assert_accepted(api, kc.issue_token("carol"))
    assert principal["subject"] == subject
    assert rows_for_subject(database_dsn, subject) == 1


# --- the built-in issuer ----------------------------------------------------------------------------------


@pytest.fixture
async def builtin(aiohttp_client, database_dsn):
    return await aiohttp_client(create_app(test_settings(database_dsn)))


async def builtin_jwk(client) -> dict:
    response = await client.get("/.well-known/jwks.json")
    assert response.status == 200, await response.text()
    keys = (await response.json())["keys"]
    assert keys
    return keys[0]


@pytest.fixture(scope="module")
def foreign() -> FakeKeycloak:
    """A key pair that is not the built-in issuer's (the fake is only used to sign, never started)."""
    return FakeKeycloak()


async def test_builtin_issuer_control_token_passes(builtin, database_dsn):
    response = await builtin.post("/auth/guest-login")
    assert response.status == 201, await response.text()
    login = await response.json()
    principal = await assert_accepted(builtin, login["access_token"])
    assert principal["id"] == login["user_id"]
    assert principal["issuer"] == BUILTIN_ISSUER
    assert rows_for_subject(database_dsn, principal["subject"]) == 1


@pytest.mark.parametrize(
    "case",
    [
        "alg none",
        "HS256 keyed with the PEM public key",
        "HS256 keyed with the JWK",
        "HS256 keyed with the PKCS1 PEM",
        "signed by a foreign key",
        "signed by a foreign key under the issuer's kid",
        "tampered sub",
    ],
)
async def test_builtin_issuer_refuses_forged_tokens(builtin, foreign, database_dsn, case):
    jwk = await builtin_jwk(builtin)
    subject = f"forged-{uuid.uuid4()}"
    claims = access_claims(BUILTIN_ISSUER, subject, azp=None)
    header = {"alg": "HS256", "typ": "JWT", "kid": jwk["kid"]}
    keys = public_key_secrets(jwk)
    if case == "alg none":
        token = unsigned({"alg": "none", "typ": "JWT", "kid": jwk["kid"]}, claims)
    elif case == "HS256 keyed with the PEM public key":
        token = hs256(header, claims, keys["spki-pem"])
    elif case == "HS256 keyed with the JWK":
        token = hs256(header, claims, keys["jwk-json"])
    elif case == "HS256 keyed with the PKCS1 PEM":
        token = hs256(header, claims, keys["pkcs1-pem"])
    elif case == "signed by a foreign key":
        token = foreign.sign(claims)
    elif case == "signed by a foreign key under the issuer's kid":
        token = foreign.sign(claims, kid=jwk["kid"])
        assert jwt.get_unverified_header(token)["kid"] == jwk["kid"]
    else:
        login = await (await builtin.post("/auth/guest-login")).json()
        token = tampered(login["access_token"], sub=subject)

    await assert_rejected(builtin, token, "invalid_token")
    assert rows_for_subject(database_dsn, subject) == 0


@pytest.mark.parametrize(
    "case",
    ["word", "three letters", "empty segments", "non-base64", "header that is a JSON list", "8 KB string", "100 KB string"],
)
async def test_builtin_issuer_refuses_garbage(builtin, case):
    await assert_rejected(builtin, GARBAGE[case], "invalid_token")
