"""From the credential a request presents to the principal it proves.

- ``Authorization: Bearer sk_...`` or ``X-API-Key: sk_...``: an API key;
- the bootstrap ADMIN_API_KEY (either way): the built-in administrator;
- ``Authorization: Bearer <JWT>``: an access token of the configured identity provider;
- no credential, but the gateway's shared secret: the identity headers the gateway set.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Protocol

from llm_api.auth.api_keys import KEY_PREFIX, ApiKeys
from llm_api.auth.principal import Credentials, Principal
from llm_api.auth.sessions import TokenSet
from llm_api.auth.tokens import Identity
from llm_api.auth.users import UserDirectory
from llm_api.errors import Unauthorized

GATEWAY_SECRET_HEADER = "X-Gateway-Secret"
# The bootstrap administrator is a user of its own, so that what it creates has an owner.
ADMIN_IDENTITY = Identity(
    issuer="llm-api:bootstrap",
    subject="admin",
    username="admin",
    email=None,
    name="Administrator",
    roles=("admin",),
    is_guest=False,
)


class IdentityProvider(Protocol):
    async def guest_login(self) -> TokenSet: ...
    async def refresh(self, refresh_token: str) -> TokenSet: ...
    async def logout(self, refresh_token: str) -> None: ...
    async def verify(self, access_token: str) -> Identity: ...
    def jwks(self) -> dict: ...


class Authenticator:
    def __init__(
        self,
        identity: IdentityProvider,
        api_keys: ApiKeys,
        directory: UserDirectory,
        *,
        admin_api_key: str | None,
        gateway_secret: str | None,
    ) -> None:
        self._identity = identity
        self._api_keys = api_keys
        self._directory = directory
        self._admin_api_key = admin_api_key
        self._gateway_secret = gateway_secret

    async def authenticate(self, credentials: Credentials) -> Principal:
        secret = credentials.value
        if self._admin_api_key is not None and hmac.compare_digest(secret.encode(), self._admin_api_key.encode()):
            user_id = await self._directory.register(ADMIN_IDENTITY)
            return _principal(user_id, ADMIN_IDENTITY, "apikey")
        if credentials.scheme == "api_key" or secret.startswith(KEY_PREFIX):
            owner = await self._api_keys.authenticate(secret)
            # Roles are not stored: admin rights come from a token's role claim or the bootstrap key.
            return Principal(
                user_id=owner.user_id,
                subject=owner.subject,
                issuer=owner.issuer,
                auth_method="apikey",
                username=owner.username,
                email=owner.email,
                name=owner.name,
                is_guest=owner.is_guest,
            )
        identity = await self._identity.verify(secret)
        return _principal(await self._directory.register(identity), identity, "jwt")

    def came_through_gateway(self, headers: Mapping[str, str]) -> bool:
        """True when the request carries the secret shared with the gateway (constant-time check)."""
        if self._gateway_secret is None:
            return False
        presented = headers.get(GATEWAY_SECRET_HEADER, "").encode("utf-8", "surrogateescape")
        return hmac.compare_digest(presented, self._gateway_secret.encode())

    async def from_gateway(self, headers: Mapping[str, str], *, default_issuer: str) -> Principal:
        """The identity the gateway asserts (``X-User-Subject`` etc.); only after came_through_gateway()."""
        values = {name: _header_text(headers, name) for name in _GATEWAY_IDENTITY_HEADERS}
        roles = tuple(role.strip() for role in (values["X-User-Roles"] or "").split(",") if role.strip())
        identity = Identity(
            issuer=values["X-User-Issuer"] or default_issuer,
            subject=values["X-User-Subject"] or "",
            username=values["X-User-Username"],
            email=values["X-User-Email"],
            name=None,
            roles=roles,
            is_guest="guest" in roles,
        )
        if not identity.subject:
            raise Unauthorized("The gateway sent no usable X-User-Subject.", code="invalid_gateway_identity")
        if len(identity.subject.encode()) > _MAX_KEY_BYTES or len(identity.issuer.encode()) > _MAX_KEY_BYTES:
            # Users are keyed by (issuer, subject) in a btree index, whose entries cannot exceed 2704 bytes:
            # a longer pair failed in PostgreSQL, answered as a 503 "database unavailable".
            raise Unauthorized(
                f"The gateway sent an X-User-Subject or X-User-Issuer over {_MAX_KEY_BYTES} bytes.",
                code="invalid_gateway_identity",
            )
        method = "apikey" if headers.get("X-Auth-Method", "").lower() == "apikey" else "jwt"
        return _principal(await self._directory.register(identity), identity, method)


_MAX_KEY_BYTES = 1024  # of X-User-Subject and of X-User-Issuer, each
_GATEWAY_IDENTITY_HEADERS = ("X-User-Subject", "X-User-Issuer", "X-User-Username", "X-User-Email", "X-User-Roles")


def _header_text(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value, stripped; None when absent, blank, or not valid text (undecodable bytes)."""
    value = headers.get(name, "").strip()
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value if value and value.isprintable() else None


def _principal(user_id: str, identity: Identity, method: str) -> Principal:
    return Principal(
        user_id=user_id,
        subject=identity.subject,
        issuer=identity.issuer,
        auth_method=method,
        username=identity.username,
        email=identity.email,
        name=identity.name,
        roles=identity.roles,
        is_guest=identity.is_guest,
    )
