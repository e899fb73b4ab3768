"""A wire-level fake Keycloak (24+) for tests: real HTTP on loopback, real RS256 tokens, real error bodies.

The code under test talks to it exactly as it talks to Keycloak, so nothing is patched::

    kc = FakeKeycloak()                      # realm "jan", public client "jan-client", confidential "backend"
    base_url = await kc.start()              # http://127.0.0.1:<port>
    user_id = kc.add_user("alice", "secret", attributes={"guest": ["true"]})
    token = kc.issue_token("alice")          # or a password grant over HTTP
    kc.rotate_key(); kc.drop_old_keys()      # key rotation as seen through the JWKS
    assert kc.requests.count(("GET", "/realms/jan/protocol/openid-connect/certs")) == 1
    await kc.stop()

What is served (paths, form fields, JSON field names and error bodies as Keycloak returns them):

* ``GET  /realms/{realm}/.well-known/openid-configuration`` and ``GET .../protocol/openid-connect/certs``.
  The JWKS lists the current signing key, the retained older ones, and (like a stock realm) one
  ``use: enc`` RSA-OAEP key, which must never be used to verify a signature.
* ``POST /realms/{realm}/protocol/openid-connect/token`` (form-encoded, client authentication by form
  fields or HTTP Basic): grants ``password``, ``client_credentials`` and ``refresh_token``.
* ``POST /realms/{realm}/protocol/openid-connect/logout`` with ``refresh_token``: 204, ends the session.
* Admin REST under ``/admin/realms/{realm}``: ``users`` (create, search, get, update, delete),
  ``users/{id}/reset-password``, ``users/{id}/role-mappings/realm`` (get, add, remove), ``roles``,
  ``roles/{name}``. A bearer token is required: one of realm ``master`` with its realm role ``admin``
  (``admin-cli`` password grant as the admin user), or one of the same realm carrying the
  ``realm-management`` client roles the call needs (the ``backend`` service account has them).

Choices where Keycloak is configurable or where the fake is simpler than the real thing:

* Refresh tokens are HS512 JWTs with ``typ: Refresh`` (as in Keycloak), signed with a per-realm
  secret that only the fake knows; they are opaque to clients.
* The realm revokes refresh tokens (``revokeRefreshToken: true``, ``refreshTokenMaxReuse: 0``),
  which is *not* Keycloak's default: a refresh token works once. Replaying the last used one gives
  "Maximum allowed refresh token reuse exceeded", replaying an older one "Stale token"; either way
  Keycloak then detaches the client from the session, so the newest refresh token of that session
  dies too ("Session doesn't have required client"). Pass ``revoke_refresh_tokens=False`` for
  Keycloak's default (refresh tokens reusable until they expire).
* ``client_credentials`` gives no refresh token and no session (``session_state``/``sid`` absent),
  as with Keycloak's default "use refresh tokens for client credentials grant: off".
* Scope: the default client scopes ``profile email`` always; ``openid`` only when requested, which
  also adds an ``id_token`` to the response. ``offline_access`` (offline tokens) is not modelled and
  is refused as an invalid scope, like any scope the fake does not know.
* The user profile accepts any attribute (as a realm with unmanaged attributes enabled), and never
  asks for first/last name (no ``VERIFY_PROFILE`` required action).
* Users created over the admin API without ``"enabled": true`` are disabled, as in Keycloak.
* User attributes become token claims only for the names in ``token_attributes`` (default:
  ``guest``), first value as a string, like a "User Attribute" mapper of the realm export.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import itertools
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import RSAAlgorithm

MASTER = "master"
ADMIN_CLI = "admin-cli"
ACCOUNT = "account"  # the client whose roles every user gets through default-roles-<realm>
REALM_MANAGEMENT = "realm-management"
ACCOUNT_ROLES = ("manage-account", "manage-account-links", "view-profile")
DEFAULT_SCOPES = ("profile", "email")  # default client scopes that show in the "scope" claim
SILENT_SCOPES = {"roles", "web-origins", "acr", "basic"}  # default client scopes that do not
OPTIONAL_SCOPES = ("address", "phone")
# Admin roles of the realm-management client and the finer roles they contain.
ADMIN_ROLE_COMPOSITES = {
    "view-users": {"query-users", "query-groups"},
    "view-clients": {"query-clients"},
}
REALM_ADMIN_ROLES = (
    "manage-users",
    "view-users",
    "query-users",
    "query-groups",
    "view-realm",
    "manage-realm",
    "view-clients",
    "query-clients",
    "query-realms",
    "manage-clients",
    "view-events",
    "manage-events",
)
# What the fake's backend service account may do (the jan realm export gives it user management).
BACKEND_ADMIN_ROLES = ("manage-users", "view-users", "query-users", "query-groups", "view-realm")

# Errors exactly as Keycloak words them.
INVALID_CLIENT = "Invalid client or Invalid client credentials"
UNAUTHORIZED = {"error": "HTTP 401 Unauthorized"}
FORBIDDEN = {"error": "HTTP 403 Forbidden"}


class KeycloakError(Exception):
    """An error response: raised inside a handler, rendered by the middleware."""

    def __init__(self, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {dict(body)}")
        self.status = status
        self.body = dict(body)
        self.headers = dict(headers or {})


def _oauth_error(status: int, error: str, description: str) -> KeycloakError:
    return KeycloakError(
        status, {"error": error, "error_description": description}, {"Cache-Control": "no-store", "Pragma": "no-cache"}
    )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class _Key:
    """An RSA key of a realm, with the self-signed certificate Keycloak publishes next to it."""

    kid: str
    private: rsa.RSAPrivateKey
    use: str  # "sig" or "enc"
    cert_der: bytes

    @classmethod
    def generate(cls, realm: str, use: str = "sig") -> _Key:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, realm)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .sign(private, hashes.SHA256())
        )
        return cls(_b64url(secrets.token_bytes(32)), private, use, cert.public_bytes(serialization.Encoding.DER))

    def jwk(self) -> dict[str, Any]:
        numbers = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {
            "kid": self.kid,
            "kty": "RSA",
            "alg": "RS256" if self.use == "sig" else "RSA-OAEP",
            "use": self.use,
            "n": numbers["n"],
            "e": numbers["e"],
            "x5c": [base64.b64encode(self.cert_der).decode()],
            "x5t": _b64url(hashlib.sha1(self.cert_der).digest()),
            "x5t#S256": _b64url(hashlib.sha256(self.cert_der).digest()),
        }


@dataclass
class _Client:
    client_id: str
    secret: str | None  # None: a public client
    direct_grants: bool = True
    service_account_user_id: str | None = None  # set when service accounts are enabled

    @property
    def public(self) -> bool:
        return self.secret is None


@dataclass
class _Session:
    """A user session with its one client session (Keycloak keeps one per client)."""

    id: str
    realm: str
    user_id: str
    client_id: str
    scope: str
    timestamp: int  # sequence number of the login or of the last refresh
    active: bool = True
    client_detached: bool = False  # after a refresh token replay
    current_refresh: str | None = None  # jti of the refresh token used last
    refresh_use_count: int = 0


@dataclass
class _Realm:
    name: str
    keys: list[_Key]  # signing keys, the current one last
    enc_key: _Key
    id: str = ""
    hmac_secret: bytes = field(default_factory=lambda: secrets.token_bytes(64))
    hmac_kid: str = field(default_factory=lambda: str(uuid.uuid4()))
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    clients: dict[str, _Client] = field(default_factory=dict)
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[str, _Session] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.id = self.id or self.name  # an imported realm keeps its name as id
        default = f"default-roles-{self.name}"
        for name, description, composite in (
            (default, "${role_default-roles}", True),
            ("offline_access", "${role_offline-access}", False),
            ("uma_authorization", "${role_uma_authorization}", False),
        ):
            self.add_role(name, description, composite)
        self.clients[ADMIN_CLI] = _Client(ADMIN_CLI, None)

    def add_role(self, name: str, description: str | None = None, composite: bool = False) -> None:
        rep = {
            "id": str(uuid.uuid4()),
            "name": name,
            "description": description,
            "composite": composite,
            "clientRole": False,
            "containerId": self.id,
        }
        self.roles[name] = {k: v for k, v in rep.items() if v is not None}

    @property
    def current_key(self) -> _Key:
        return self.keys[-1]

    def user_by_username(self, username: str) -> dict[str, Any] | None:
        username = username.lower()
        return next((u for u in self.users.values() if u["username"] == username), None)


class FakeKeycloak:
    """A Keycloak realm (plus realm ``master`` with its admin) served over HTTP on loopback."""

    def __init__(
        self,
        *,
        realm: str = "jan",
        client_id: str = "jan-client",
        audience: str = "account",
        admin_user: str = "admin",
        admin_password: str = "admin",
        backend_client_id: str = "backend",
        backend_client_secret: str = "backend-secret",
        access_token_ttl: int = 300,
        refresh_token_ttl: int = 1800,
        client_secret: str | None = None,
        revoke_refresh_tokens: bool = True,
        token_attributes: Iterable[str] = ("guest",),
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``client_secret`` makes ``client_id`` a confidential client (public by default);
        ``clock`` is the time the fake issues and checks tokens with."""
        self.realm = realm
        self.client_id = client_id
        self.audience = audience
        self.admin_user = admin_user
        self.admin_password = admin_password
        self.backend_client_id = backend_client_id
        self.backend_client_secret = backend_client_secret
        self.access_token_ttl = access_token_ttl
        self.refresh_token_ttl = refresh_token_ttl
        self.revoke_refresh_tokens = revoke_refresh_tokens
        self.token_attributes = tuple(token_attributes)
        self._clock = clock
        self._seq = itertools.count(1)  # orders logins and refreshes (Keycloak uses seconds)
        self._refresh_seq: dict[str, int] = {}  # refresh token jti -> when it was issued
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request received
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._realms: dict[str, _Realm] = {}

        main = self._new_realm(realm)
        for name in ("admin", "user", "guest"):
            main.add_role(name)
        main.clients[client_id] = _Client(client_id, client_secret)
        backend = _Client(backend_client_id, backend_client_secret)
        main.clients[backend_client_id] = backend
        backend.service_account_user_id = self._create_user(
            main,
            f"service-account-{backend_client_id}",
            None,
            realm_roles=(),
            attributes=None,
            enabled=True,
            client_roles={REALM_MANAGEMENT: list(BACKEND_ADMIN_ROLES)},
            service_account_client_id=backend_client_id,
        )
        self.users: dict[str, dict[str, Any]] = main.users  # live state of the realm's users, by id

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> str:
        """Listen on a free loopback port; return the base URL."""
        app = web.Application(middlewares=[self._middleware])
        realm = "/realms/{realm}"
        oidc = realm + "/protocol/openid-connect"
        admin = "/admin/realms/{realm}"
        app.router.add_get(realm + "/.well-known/openid-configuration", self._discovery)
        app.router.add_get(oidc + "/certs", self._certs)
        app.router.add_post(oidc + "/token", self._token)
        app.router.add_route("*", oidc + "/logout", self._logout)
        app.router.add_get(admin + "/users", self._admin_search_users)
        app.router.add_post(admin + "/users", self._admin_create_user)
        app.router.add_get(admin + "/users/{id}", self._admin_get_user)
        app.router.add_put(admin + "/users/{id}", self._admin_update_user)
        app.router.add_delete(admin + "/users/{id}", self._admin_delete_user)
        app.router.add_put(admin + "/users/{id}/reset-password", self._admin_reset_password)
        app.router.add_get(admin + "/users/{id}/role-mappings/realm", self._admin_get_role_mappings)
        app.router.add_post(admin + "/users/{id}/role-mappings/realm", self._admin_add_role_mappings)
        app.router.add_delete(admin + "/users/{id}/role-mappings/realm", self._admin_delete_role_mappings)
        app.router.add_get(admin + "/roles", self._admin_list_roles)
        app.router.add_get(admin + "/roles/{role}", self._admin_get_role)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def issuer(self) -> str:
        return self._issuer(self.realm)

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/certs"

    @property
    def current_kid(self) -> str:
        return self._realms[self.realm].current_key.kid

    # -- test helpers (direct, not over HTTP) ---------------------------------------------------------

    def add_user(
        self,
        username: str,
        password: str | None,
        *,
        realm_roles: Iterable[str] = ("user",),
        attributes: Mapping[str, str | Iterable[str]] | None = None,
        enabled: bool = True,
        email: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        email_verified: bool = False,
    ) -> str:
        """Add a user to the realm (with ``default-roles-<realm>`` besides ``realm_roles``); return its id."""
        main = self._realms[self.realm]
        if main.user_by_username(username) is not None:
            raise ValueError(f"user {username!r} exists")
        unknown = set(realm_roles) - set(main.roles)
        if unknown:
            raise ValueError(f"unknown realm roles {sorted(unknown)}")
        return self._create_user(
            main,
            username,
            password,
            realm_roles=realm_roles,
            attributes=attributes,
            enabled=enabled,
            email=email,
            first_name=first_name,
            last_name=last_name,
            email_verified=email_verified,
        )

    def issue_token(self, username: str, **claim_overrides: Any) -> str:
        """An access token for the user as a password grant of ``client_id`` with ``scope=openid`` would
        give (a session is opened for it). A claim override of ``None`` removes the claim."""
        main = self._realms[self.realm]
        user = main.user_by_username(username)
        if user is None:
            raise KeyError(username)
        session = self._open_session(main, user, main.clients[self.client_id], "openid profile email")
        claims = self._access_claims(main, user, main.clients[self.client_id], session, session.scope)
        for name, value in claim_overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return self._sign(main, claims)

    def sign(
        self,
        claims: Mapping[str, Any],
        *,
        kid: str | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """RS256-sign arbitrary claims with the realm key ``kid`` (default: the current key). An unknown
        ``kid`` is put in the header while signing with the current key; ``headers`` are merged in last."""
        main = self._realms[self.realm]
        key = next((k for k in main.keys if k.kid == kid), main.current_key)
        header = {"kid": kid if kid is not None else key.kid, **(headers or {})}
        return jwt.encode(dict(claims), key.private, algorithm="RS256", headers=header)

    def rotate_key(self) -> str:
        """A new signing key becomes current; the older ones stay in the JWKS. Returns the new kid."""
        main = self._realms[self.realm]
        main.keys.append(_Key.generate(main.name))
        return main.current_key.kid

    def drop_old_keys(self) -> None:
        """Delete every signing key but the current one (the JWKS keeps the realm's ``enc`` key)."""
        main = self._realms[self.realm]
        del main.keys[:-1]

    def reset_requests(self) -> None:
        self.requests.clear()

    def jwks(self, realm: str | None = None) -> dict[str, Any]:
        """The JWKS as served for ``realm`` (default: the main realm)."""
        r = self._get_realm(realm or self.realm)
        return {"keys": [k.jwk() for k in reversed(r.keys)] + [r.enc_key.jwk()]}

    def sessions(self, username: str) -> list[str]:
        """Ids of the user's active sessions in the main realm."""
        main = self._realms[self.realm]
        user = main.user_by_username(username)
        return [s.id for s in main.sessions.values() if user and s.user_id == user["id"] and s.active]

    # -- realms and users ------------------------------------------------------------------------------

    def _new_realm(self, name: str) -> _Realm:
        r = _Realm(name, [_Key.generate(name)], _Key.generate(name, "enc"))
        self._realms[name] = r
        if name == MASTER:
            r.add_role("admin", "${role_admin}", True)
            r.add_role("create-realm", "${role_create-realm}")
            self._create_user(
                r, self.admin_user, self.admin_password, realm_roles=("admin", "create-realm"), attributes=None, enabled=True
            )
        return r

    def _get_realm(self, name: str) -> _Realm:
        """The realm, or 404 as Keycloak says it; ``master`` is built on first use (its keys cost time)."""
        if name not in self._realms and name == MASTER:
            self._new_realm(MASTER)
        if name not in self._realms:
            raise KeycloakError(404, {"error": "Realm does not exist"})
        return self._realms[name]

    def _create_user(
        self,
        realm: _Realm,
        username: str,
        password: str | None,
        *,
        realm_roles: Iterable[str],
        attributes: Mapping[str, Any] | None,
        enabled: bool,
        email: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        email_verified: bool = False,
        required_actions: Iterable[str] = (),
        client_roles: Mapping[str, list[str]] | None = None,
        service_account_client_id: str | None = None,
    ) -> str:
        user_id = str(uuid.uuid4())
        roles = [f"default-roles-{realm.name}"] + [r for r in realm_roles if r != f"default-roles-{realm.name}"]
        realm.users[user_id] = {
            "id": user_id,
            "username": username.lower(),
            "email": email.lower() if email else None,
            "first_name": first_name,
            "last_name": last_name,
            "email_verified": email_verified,
            "enabled": enabled,
            "attributes": _attribute_lists(attributes or {}),
            "realm_roles": roles,
            "client_roles": {k: list(v) for k, v in (client_roles or {}).items()},
            "password": password,
            "required_actions": list(required_actions),
            "created_timestamp": int(self._clock() * 1000),
            "service_account_client_id": service_account_client_id,
        }
        return user_id

    def _effective_realm_roles(self, realm: _Realm, user: Mapping[str, Any]) -> list[str]:
        roles = set(user["realm_roles"])
        if f"default-roles-{realm.name}" in roles:
            roles |= {"offline_access", "uma_authorization"}
        return sorted(roles)

    def _resource_access(self, realm: _Realm, user: Mapping[str, Any]) -> dict[str, dict[str, list[str]]]:
        access: dict[str, dict[str, list[str]]] = {}
        for client, roles in user["client_roles"].items():
            expanded = set(roles)
            for role in roles:
                expanded |= ADMIN_ROLE_COMPOSITES.get(role, set())
            access[client] = {"roles": sorted(expanded)}
        if f"default-roles-{realm.name}" in user["realm_roles"]:
            access[ACCOUNT] = {"roles": list(ACCOUNT_ROLES)}
        return access

    # -- tokens ----------------------------------------------------------------------------------------

    def _issuer(self, realm: str) -> str:
        return f"{self.base_url}/realms/{realm}"

    def _sign(self, realm: _Realm, claims: Mapping[str, Any]) -> str:
        return jwt.encode(dict(claims), realm.current_key.private, algorithm="RS256", headers={"kid": realm.current_key.kid})

    def _open_session(self, realm: _Realm, user: Mapping[str, Any], client: _Client, scope: str) -> _Session:
        session = _Session(str(uuid.uuid4()), realm.name, user["id"], client.client_id, scope, next(self._seq))
        realm.sessions[session.id] = session
        return session

    def _access_claims(
        self, realm: _Realm, user: Mapping[str, Any], client: _Client, session: _Session | None, scope: str
    ) -> dict[str, Any]:
        now = int(self._clock())
        resource_access = self._resource_access(realm, user)
        audience = self.audience if realm.name == self.realm else ACCOUNT
        aud = [audience] + [c for c in resource_access if c not in (ACCOUNT, client.client_id, audience)]
        claims: dict[str, Any] = {
            "exp": now + self.access_token_ttl,
            "iat": now,
            "jti": str(uuid.uuid4()),
            "iss": self._issuer(realm.name),
            "aud": aud[0] if len(aud) == 1 else aud,
            "sub": user["id"],
            "typ": "Bearer",
            "azp": client.client_id,
        }
        if session is not None:
            claims["session_state"] = session.id
        claims.update(
            {
                "acr": "1",
                "realm_access": {"roles": self._effective_realm_roles(realm, user)},
                "resource_access": resource_access,
                "scope": scope,
            }
        )
        if session is not None:
            claims["sid"] = session.id
        claims.update(self._profile_claims(user))
        if user["service_account_client_id"]:
            claims.update(
                {"clientHost": "127.0.0.1", "client_id": user["service_account_client_id"], "clientAddress": "127.0.0.1"}
            )
        return claims

    def _profile_claims(self, user: Mapping[str, Any]) -> dict[str, Any]:
        claims: dict[str, Any] = {"email_verified": user["email_verified"]}
        names = [n for n in (user["first_name"], user["last_name"]) if n]
        if names:
            claims["name"] = " ".join(names)
        claims["preferred_username"] = user["username"]
        if user["first_name"]:
            claims["given_name"] = user["first_name"]
        if user["last_name"]:
            claims["family_name"] = user["last_name"]
        if user["email"]:
            claims["email"] = user["email"]
        for name in self.token_attributes:
            values = user["attributes"].get(name)
            if values:
                claims[name] = values[0]
        return claims

    def _token_response(
        self, realm: _Realm, user: Mapping[str, Any], client: _Client, session: _Session | None, scope: str
    ) -> dict[str, Any]:
        access = self._sign(realm, self._access_claims(realm, user, client, session, scope))
        body: dict[str, Any] = {"access_token": access, "expires_in": self.access_token_ttl}
        if session is None:
            body["refresh_expires_in"] = 0
        else:
            body["refresh_expires_in"] = self.refresh_token_ttl
            body["refresh_token"] = self._refresh_token(realm, user, client, session)
        body["token_type"] = "Bearer"
        if "openid" in scope.split():
            body["id_token"] = self._id_token(realm, user, client, session, access)
        body["not-before-policy"] = 0
        if session is not None:
            body["session_state"] = session.id
        body["scope"] = scope
        return body

    def _refresh_token(self, realm: _Realm, user: Mapping[str, Any], client: _Client, session: _Session) -> str:
        now = int(self._clock())
        jti = str(uuid.uuid4())
        self._refresh_seq[jti] = session.timestamp
        claims = {
            "exp": now + self.refresh_token_ttl,
            "iat": now,
            "jti": jti,
            "iss": self._issuer(realm.name),
            "aud": self._issuer(realm.name),
            "sub": user["id"],
            "typ": "Refresh",
            "azp": client.client_id,
            "session_state": session.id,
            "scope": session.scope,
            "sid": session.id,
        }
        return jwt.encode(claims, realm.hmac_secret, algorithm="HS512", headers={"kid": realm.hmac_kid})

    def _id_token(
        self, realm: _Realm, user: Mapping[str, Any], client: _Client, session: _Session | None, access_token: str
    ) -> str:
        now = int(self._clock())
        digest = hashlib.sha256(access_token.encode()).digest()
        claims: dict[str, Any] = {
            "exp": now + self.access_token_ttl,
            "iat": now,
            "jti": str(uuid.uuid4()),
            "iss": self._issuer(realm.name),
            "aud": client.client_id,
            "sub": user["id"],
            "typ": "ID",
            "azp": client.client_id,
            "at_hash": _b64url(digest[:16]),
            "acr": "1",
        }
        if session is not None:
            claims["session_state"] = session.id
            claims["sid"] = session.id
        claims.update(self._profile_claims(user))
        return self._sign(realm, claims)

    def _decode_refresh(self, realm: _Realm, client: _Client, token: str, *, check_expiry: bool) -> dict[str, Any]:
        """The claims of a refresh token of this realm, or the invalid_grant Keycloak answers with."""
        try:
            claims = jwt.decode(
                token,
                realm.hmac_secret,
                algorithms=["HS512"],
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False, "verify_aud": False},
            )
        except jwt.PyJWTError:
            raise _oauth_error(400, "invalid_grant", "Invalid refresh token") from None
        if claims.get("typ") not in ("Refresh", "Offline"):
            raise _oauth_error(400, "invalid_grant", "Invalid refresh token")
        if check_expiry and int(claims.get("exp", 0)) <= int(self._clock()):
            raise _oauth_error(400, "invalid_grant", "Token is not active")
        if claims.get("azp") != client.client_id:
            raise _oauth_error(400, "invalid_grant", "Invalid refresh token. Token client and authorized client don't match")
        return claims

    # -- HTTP: plumbing ----------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        try:
            return await handler(request)
        except KeycloakError as e:
            return web.json_response(e.body, status=e.status, headers=e.headers)
        except web.HTTPNotFound:
            return web.json_response(
                {
                    "error": "Unable to find matching target resource method",
                    "error_description": "For more on this error consult the server log.",
                },
                status=404,
            )
        except web.HTTPMethodNotAllowed:
            return web.json_response({"error": "HTTP 405 Method Not Allowed"}, status=405)

    async def _form(self, request: web.Request) -> Mapping[str, str]:
        """The form parameters (415 unless form-encoded; 400 for a repeated parameter, as Keycloak)."""
        if request.content_type != "application/x-www-form-urlencoded":
            raise KeycloakError(415, {"error": "HTTP 415 Unsupported Media Type"})
        form = await request.post()
        if any(len(form.getall(k)) > 1 for k in form):
            raise _oauth_error(400, "invalid_request", "duplicated parameter")
        return {k: str(v) for k, v in form.items()}

    def _authenticate_client(self, realm: _Realm, request: web.Request, form: Mapping[str, str]) -> _Client:
        """Client authentication (``client_secret_post`` or ``client_secret_basic``) as Keycloak answers it."""
        client_id = form.get("client_id")
        secret = form.get("client_secret")
        authorization = request.headers.get("Authorization", "")
        if authorization[:6].lower() == "basic ":
            try:
                user, _, password = base64.b64decode(authorization[6:].strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user = password = None
            if user is not None:  # RFC 6749 2.3.1: both parts are form-encoded before Basic encoding
                client_id = client_id or unquote_plus(user)
                secret = secret if "client_secret" in form else unquote_plus(password or "")
        if client_id is None:
            raise _oauth_error(400, "invalid_client", "Missing client_id parameter")
        client = realm.clients.get(client_id)
        if client is None:
            raise _oauth_error(401, "invalid_client", INVALID_CLIENT)
        if client.public:
            return client
        if secret is None or not secrets.compare_digest(secret.encode(), client.secret.encode()):
            raise _oauth_error(401, "unauthorized_client", INVALID_CLIENT)
        return client

    def _granted_scope(self, requested: str | None) -> str:
        scopes = (requested or "").split()
        unknown = [s for s in scopes if s not in {"openid", *DEFAULT_SCOPES, *OPTIONAL_SCOPES, *SILENT_SCOPES}]
        if unknown:
            raise _oauth_error(400, "invalid_scope", f"Invalid scopes: {requested}")
        granted = (["openid"] if "openid" in scopes else []) + list(DEFAULT_SCOPES)
        granted += [s for s in OPTIONAL_SCOPES if s in scopes]
        return " ".join(granted)

    # -- HTTP: OpenID Connect --------------------------------------------------------------------------------

    async def _discovery(self, request: web.Request) -> web.Response:
        name = self._get_realm(request.match_info["realm"]).name
        issuer = self._issuer(name)
        oidc = f"{issuer}/protocol/openid-connect"
        return web.json_response(
            {
                "issuer": issuer,
                "authorization_endpoint": f"{oidc}/auth",
                "token_endpoint": f"{oidc}/token",
                "introspection_endpoint": f"{oidc}/token/introspect",
                "userinfo_endpoint": f"{oidc}/userinfo",
                "end_session_endpoint": f"{oidc}/logout",
                "jwks_uri": f"{oidc}/certs",
                "grant_types_supported": ["authorization_code", "implicit", "refresh_token", "password", "client_credentials"],
                "response_types_supported": [
                    "code",
                    "none",
                    "id_token",
                    "token",
                    "id_token token",
                    "code id_token",
                    "code token",
                    "code id_token token",
                ],
                "subject_types_supported": ["public", "pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "scopes_supported": ["openid", *DEFAULT_SCOPES, *OPTIONAL_SCOPES, *sorted(SILENT_SCOPES)],
                "claims_supported": [
                    "aud",
                    "sub",
                    "iss",
                    "auth_time",
                    "name",
                    "given_name",
                    "family_name",
                    "preferred_username",
                    "email",
                    "acr",
                ],
            }
        )

    async def _certs(self, request: web.Request) -> web.Response:
        return web.json_response(self.jwks(request.match_info["realm"]))

    async def _token(self, request: web.Request) -> web.Response:
        realm = self._get_realm(request.match_info["realm"])
        form = await self._form(request)
        grant_type = form.get("grant_type")
        if grant_type is None:
            raise _oauth_error(400, "invalid_request", "Missing form parameter: grant_type")
        if grant_type not in ("password", "client_credentials", "refresh_token"):
            raise _oauth_error(400, "unsupported_grant_type", "Unsupported grant_type")
        client = self._authenticate_client(realm, request, form)
        if grant_type == "password":
            body = self._password_grant(realm, client, form)
        elif grant_type == "client_credentials":
            body = self._client_credentials_grant(realm, client, form)
        else:
            body = self._refresh_grant(realm, client, form)
        return web.json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _password_grant(self, realm: _Realm, client: _Client, form: Mapping[str, str]) -> dict[str, Any]:
        if not client.direct_grants:
            raise _oauth_error(400, "unauthorized_client", "Client not allowed for direct access grants")
        scope = self._granted_scope(form.get("scope"))
        username = form.get("username")
        if username is None:
            raise _oauth_error(401, "invalid_request", "Missing parameter: username")
        user = realm.user_by_username(username)
        if user is None or user["service_account_client_id"]:
            raise _oauth_error(401, "invalid_grant", "Invalid user credentials")
        if not user["enabled"]:
            raise _oauth_error(400, "invalid_grant", "Account disabled")
        password = form.get("password")
        if (
            password is None
            or user["password"] is None
            or not secrets.compare_digest(password.encode(), user["password"].encode())
        ):
            raise _oauth_error(401, "invalid_grant", "Invalid user credentials")
        if user["required_actions"]:
            raise _oauth_error(400, "invalid_grant", "Account is not fully set up")
        session = self._open_session(realm, user, client, scope)
        return self._token_response(realm, user, client, session, scope)

    def _client_credentials_grant(self, realm: _Realm, client: _Client, form: Mapping[str, str]) -> dict[str, Any]:
        if client.public:
            raise _oauth_error(401, "unauthorized_client", "Public client not allowed to retrieve service account")
        if client.service_account_user_id is None:
            raise _oauth_error(401, "unauthorized_client", "Client not enabled to retrieve service account")
        user = realm.users[client.service_account_user_id]
        if not user["enabled"]:
            raise _oauth_error(401, "invalid_request", f"User '{user['username']}' disabled")
        scope = self._granted_scope(form.get("scope"))
        return self._token_response(realm, user, client, None, scope)

    def _refresh_grant(self, realm: _Realm, client: _Client, form: Mapping[str, str]) -> dict[str, Any]:
        token = form.get("refresh_token")
        if token is None:
            raise _oauth_error(400, "invalid_request", "No refresh token")
        claims = self._decode_refresh(realm, client, token, check_expiry=True)
        session = realm.sessions.get(claims.get("session_state", ""))
        if session is None or not session.active:
            raise _oauth_error(400, "invalid_grant", "Session not active")
        user = realm.users.get(session.user_id)
        if user is None:
            raise _oauth_error(400, "invalid_grant", "Invalid refresh token")
        if not user["enabled"]:
            raise _oauth_error(400, "invalid_grant", "User disabled")
        if session.client_detached or session.client_id != client.client_id:
            raise _oauth_error(400, "invalid_grant", "Session doesn't have required client")
        if self.revoke_refresh_tokens:
            self._check_reuse(session, claims["jti"])
        session.timestamp = next(self._seq)
        return self._token_response(realm, user, client, session, session.scope)

    def _check_reuse(self, session: _Session, jti: str) -> None:
        """Keycloak's refresh token rotation (max reuse 0); a failure detaches the client from the session."""
        issued = self._refresh_seq.get(jti, 0)
        error = None
        if session.current_refresh is not None and jti != session.current_refresh and issued < session.timestamp:
            error = "Stale token"
        else:
            if jti != session.current_refresh:
                session.current_refresh = jti
                session.refresh_use_count = 0
            if session.refresh_use_count > 0:
                error = "Maximum allowed refresh token reuse exceeded"
        if error is not None:
            session.client_detached = True
            raise _oauth_error(400, "invalid_grant", error)
        session.refresh_use_count += 1

    async def _logout(self, request: web.Request) -> web.Response:
        realm = self._get_realm(request.match_info["realm"])
        form = await self._form(request) if request.method == "POST" else {}
        if request.method not in ("GET", "POST") or "refresh_token" not in form:
            # RP-initiated (browser) logout: without id_token_hint Keycloak asks the user to confirm.
            return web.Response(
                text="<html><body><h1>Logging out</h1><p>Do you want to log out?</p></body></html>", content_type="text/html"
            )
        client = self._authenticate_client(realm, request, form)
        claims = self._decode_refresh(realm, client, form["refresh_token"], check_expiry=False)
        session = realm.sessions.get(claims.get("session_state", ""))
        if session is not None:
            session.active = False
        return web.Response(status=204)

    # -- HTTP: admin REST --------------------------------------------------------------------------------------

    def _admin(self, request: web.Request, *needed: str) -> _Realm:
        """Authenticate the admin bearer token (401), find the target realm (404) and require one of the
        ``needed`` realm-management roles (403). Returns the target realm."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise KeycloakError(401, UNAUTHORIZED)
        token = token.strip()
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise KeycloakError(401, UNAUTHORIZED) from None
        issuer = str(unverified.get("iss", ""))
        token_realm = self._realms.get(issuer.rsplit("/", 1)[-1])
        if token_realm is None or issuer != self._issuer(token_realm.name):
            raise KeycloakError(401, UNAUTHORIZED)
        key = next((k for k in token_realm.keys if k.kid == kid), None)
        if key is None:
            raise KeycloakError(401, UNAUTHORIZED)
        try:
            claims = jwt.decode(
                token,
                key.private.public_key(),
                algorithms=["RS256"],
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False, "verify_aud": False},
            )
        except jwt.PyJWTError:
            raise KeycloakError(401, UNAUTHORIZED) from None
        if claims.get("typ") != "Bearer" or int(claims.get("exp", 0)) <= int(self._clock()):
            raise KeycloakError(401, UNAUTHORIZED)
        sid = claims.get("sid") or claims.get("session_state")
        if sid is not None:
            session = token_realm.sessions.get(sid)
            if session is None or not session.active:
                raise KeycloakError(401, UNAUTHORIZED)
        user = token_realm.users.get(str(claims.get("sub")))
        if user is None or not user["enabled"]:
            raise KeycloakError(401, UNAUTHORIZED)

        name = request.match_info["realm"]
        if name not in self._realms:
            raise KeycloakError(404, {"error": "Realm not found."})
        target = self._realms[name]
        if token_realm.name == MASTER and "admin" in user["realm_roles"]:
            return target  # the master realm's administrator may do anything anywhere
        if token_realm is not target:
            raise KeycloakError(403, FORBIDDEN)
        granted = set(user["client_roles"].get(REALM_MANAGEMENT, []))
        if "realm-admin" in granted:
            granted |= set(REALM_ADMIN_ROLES)
        if "manage-users" in granted:
            granted.add("view-users")  # Keycloak: whoever may manage users may view them
        for role in list(granted):
            granted |= ADMIN_ROLE_COMPOSITES.get(role, set())
        if not granted.intersection(needed):
            raise KeycloakError(403, FORBIDDEN)
        return target

    @staticmethod
    def _admin_user(request: web.Request, realm: _Realm) -> dict[str, Any]:
        user = realm.users.get(request.match_info["id"])
        if user is None:
            raise KeycloakError(404, {"error": "User not found"})
        return user

    @staticmethod
    async def _json(request: web.Request) -> Any:
        if request.content_type != "application/json":
            raise KeycloakError(415, {"error": "HTTP 415 Unsupported Media Type"})
        try:
            return await request.json()
        except ValueError:
            raise KeycloakError(400, {"error": "HTTP 400 Bad Request"}) from None

    def _user_rep(self, user: Mapping[str, Any]) -> dict[str, Any]:
        rep: dict[str, Any] = {"id": user["id"], "username": user["username"]}
        for key, field_name in (("first_name", "firstName"), ("last_name", "lastName"), ("email", "email")):
            if user[key] is not None:
                rep[field_name] = user[key]
        rep["emailVerified"] = user["email_verified"]
        if user["attributes"]:
            rep["attributes"] = {k: list(v) for k, v in user["attributes"].items()}
        rep.update(
            {
                "createdTimestamp": user["created_timestamp"],
                "enabled": user["enabled"],
                "totp": False,
                "disableableCredentialTypes": [],
                "requiredActions": list(user["required_actions"]),
                "notBefore": 0,
                "access": {"manageGroupMembership": True, "view": True, "mapRoles": True, "impersonate": False, "manage": True},
            }
        )
        if user["service_account_client_id"]:
            rep["serviceAccountClientId"] = user["service_account_client_id"]
        return rep

    @staticmethod
    def _check_profile(realm: _Realm, rep: Mapping[str, Any], user_id: str | None) -> None:
        """User profile validation and uniqueness, answered as Keycloak does."""
        email = rep.get("email")
        if email is not None and email != "" and ("@" not in str(email) or str(email).startswith("@")):
            raise KeycloakError(400, {"field": "email", "errorMessage": "error-invalid-email", "params": ["email", email]})
        if email:
            clash = next((u for u in realm.users.values() if u["email"] == str(email).lower() and u["id"] != user_id), None)
            if clash is not None:
                raise KeycloakError(409, {"errorMessage": "User exists with same email"})

    async def _admin_search_users(self, request: web.Request) -> web.Response:
        realm = self._admin(request, "view-users", "query-users")
        q = request.query
        exact = q.get("exact", "false").lower() == "true"

        def matches(value: str | None, wanted: str | None) -> bool:
            if wanted is None:
                return True
            if value is None:
                return False
            return value == wanted.lower() if exact else wanted.lower() in value

        found = [
            u
            for u in realm.users.values()
            if not u["service_account_client_id"]
            and matches(u["username"], q.get("username"))
            and matches(u["email"], q.get("email"))
            and (
                q.get("search") is None
                or any(
                    q["search"].lower().strip("*") in (v or "").lower()
                    for v in (u["username"], u["email"], u["first_name"], u["last_name"])
                )
            )
        ]
        found.sort(key=lambda u: u["username"])
        first, limit = int(q.get("first", 0)), int(q.get("max", 100))
        return web.json_response([self._user_rep(u) for u in found[first : first + limit]])

    async def _admin_create_user(self, request: web.Request) -> web.Response:
        realm = self._admin(request, "manage-users")
        rep = await self._json(request)
        if not isinstance(rep, dict):
            raise KeycloakError(400, {"error": "HTTP 400 Bad Request"})
        username = rep.get("username")
        if not username:
            raise KeycloakError(
                400, {"field": "username", "errorMessage": "error-user-attribute-required", "params": ["username"]}
            )
        if realm.user_by_username(str(username)) is not None:
            raise KeycloakError(409, {"errorMessage": "User exists with same username"})
        self._check_profile(realm, rep, None)
        realm_roles = [r for r in rep.get("realmRoles") or [] if r in realm.roles]
        user_id = self._create_user(
            realm,
            str(username),
            None,
            realm_roles=realm_roles,
            attributes=rep.get("attributes"),
            enabled=bool(rep.get("enabled", False)),
            email=rep.get("email") or None,
            first_name=rep.get("firstName") or None,
            last_name=rep.get("lastName") or None,
            email_verified=bool(rep.get("emailVerified", False)),
            required_actions=rep.get("requiredActions") or (),
        )
        for credential in rep.get("credentials") or []:
            if credential.get("type", "password") == "password" and credential.get("value"):
                realm.users[user_id]["password"] = credential["value"]
                if credential.get("temporary"):
                    realm.users[user_id]["required_actions"].append("UPDATE_PASSWORD")
        location = f"{self.base_url}/admin/realms/{realm.name}/users/{user_id}"
        return web.Response(status=201, headers={"Location": location})

    async def _admin_get_user(self, request: web.Request) -> web.Response:
        realm = self._admin(request, "view-users")
        return web.json_response(self._user_rep(self._admin_user(request, realm)))

    async def _admin_update_user(self, request: web.Request) -> web.Response:
        """Partial update. As in Keycloak, a representation carrying ``attributes`` replaces the whole
        attribute set, and then also clears email/firstName/lastName it does not repeat."""
        realm = self._admin(request, "manage-users")
        user = self._admin_user(request, realm)
        rep = await self._json(request)
        if not isinstance(rep, dict):
            raise KeycloakError(400, {"error": "HTTP 400 Bad Request"})
        username = rep.get("username")
        if username is not None and str(username).lower() != user["username"]:
            raise KeycloakError(
                400, {"field": "username", "errorMessage": "error-user-attribute-read-only", "params": ["username"]}
            )
        self._check_profile(realm, rep, user["id"])
        replace = rep.get("attributes") is not None
        for key, field_name in (("email", "email"), ("first_name", "firstName"), ("last_name", "lastName")):
            if field_name in rep and rep[field_name] is not None:
                value = str(rep[field_name]) or None
                user[key] = value.lower() if value and key == "email" else value
            elif replace:
                user[key] = None
        if replace:
            user["attributes"] = _attribute_lists(rep["attributes"])
        if rep.get("enabled") is not None:
            user["enabled"] = bool(rep["enabled"])
        if rep.get("emailVerified") is not None:
            user["email_verified"] = bool(rep["emailVerified"])
        if rep.get("requiredActions") is not None:
            user["required_actions"] = list(rep["requiredActions"])
        return web.Response(status=204)

    async def _admin_delete_user(self, request: web.Request) -> web.Response:
        realm = self._admin(request, "manage-users")
        user = self._admin_user(request, realm)
        del realm.users[user["id"]]
        for session in realm.sessions.values():
            if session.user_id == user["id"]:
                session.active = False
        return web.Response(status=204)

    async def _admin_reset_password(self, request: web.Request) -> web.Response:
        realm = self._admin(request, "manage-users")
        user = self._admin_user(request, realm)
        cred = await self._json(request)
        if not isinstance(cred, dict) or cred.get("value") is None:
            raise KeycloakError(400, {"error": "No password provided"})
        if not str(cred["value"]).strip():
            raise KeycloakError(400, {"error": "Empty password not allowed"})
        user["password"] = str(cred["value"])
        actions = [a for a in user["required_actions"] if a != "UPDATE_PASSWORD"]
        if cred.get("temporary"):
            actions.append("UPDATE_PASSWORD")
        user["required_actions"] = actions
        return web.Response(status=204)

    async def _admin_get_role_mappings(self, request: web.Request) -> web.Response:
        realm = self._admin(request, "view-users")
        user = self._admin_user(request, realm)
        return web.json_response([realm.roles[r] for r in user["realm_roles"] if r in realm.roles])

    async def _role_list(self, request: web.Request, realm: _Realm) -> list[str]:
        """Role names of a body ``[role representation]``; each must match a realm role by name and id."""
        body = await self._json(request)
        if not isinstance(body, list):
            raise KeycloakError(400, {"error": "HTTP 400 Bad Request"})
        names = []
        for rep in body:
            role = realm.roles.get(rep.get("name")) if isinstance(rep, dict) else None
            if role is None or role["id"] != rep.get("id"):
                raise KeycloakError(404, {"error": "Role not found"})
            names.append(role["name"])
        return names

    async def _admin_add_role_mappings(self, request: web.Request) -> web.Response:
        realm = self._admin(request, "manage-users")
        user = self._admin_user(request, realm)
        for name in await self._role_list(request, realm):
            if name not in user["realm_roles"]:
                user["realm_roles"].append(name)
        return web.Response(status=204)

    async def _admin_delete_role_mappings(self, request: web.Request) -> web.Response:
        realm = self._admin(request, "manage-users")
        user = self._admin_user(request, realm)
        names = await self._role_list(request, realm)
        user["realm_roles"] = [r for r in user["realm_roles"] if r not in names]
        return web.Response(status=204)

    async def _admin_list_roles(self, request: web.Request) -> web.Response:
        realm = self._admin(request, "view-realm", "manage-realm", "query-users", "query-groups", "query-clients", "query-realms")
        return web.json_response(list(realm.roles.values()))

    async def _admin_get_role(self, request: web.Request) -> web.Response:
        realm = self._admin(request, "view-realm", "manage-realm", "query-users", "query-groups", "query-clients", "query-realms")
        role = realm.roles.get(request.match_info["role"])
        if role is None:
            raise KeycloakError(404, {"error": "Could not find role"})
        return web.json_response(role)


def _attribute_lists(attributes: Mapping[str, Any]) -> dict[str, list[str]]:
    """Attributes as Keycloak stores them: every value a list of strings (a single string is accepted)."""
    result = {}
    for name, values in attributes.items():
        if values is None:
            continue
        result[str(name)] = [str(values)] if isinstance(values, (str, int, bool)) else [str(v) for v in values]
    return result
