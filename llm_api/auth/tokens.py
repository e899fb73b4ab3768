"""Verifying RS256 access tokens, whoever issued them (the built-in issuer or Keycloak).

Only RS256 is accepted, whatever the token's header says: that closes ``alg: none`` and the
"HS256 signed with the public key" confusion. The key is chosen by ``kid`` from the issuer's key
set; ``iss`` must match exactly, ``aud`` must contain the configured audience, and ``exp``/``nbf``
are checked with a small clock-skew allowance.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt

from llm_api.errors import Unauthorized

ALGORITHM = "RS256"

KeyLookup = Callable[[str], Awaitable[Any | None]]


@dataclass(frozen=True, slots=True)
class Identity:
    """What a verified token says about its holder."""

    issuer: str
    subject: str
    username: str | None
    email: str | None
    name: str | None
    roles: tuple[str, ...]
    is_guest: bool


class AccessTokens:
    """Verifies access tokens against an issuer's key set, remembering the ones that passed.

    A client sends the same token on every request; checking its RSA signature each time was the
    largest part of the service's own time per request. A verified token is remembered (by its
    SHA-256) until it expires, for at most ``max_age`` seconds, and only while the key that signed it
    is still the issuer's: each use asks ``key_for`` again (a dictionary lookup, or the key-set refresh
    that would have happened anyway), so a key removed from the set stops its tokens at once.
    Failures are not remembered: an invalid token is checked in full every time.
    """

    def __init__(
        self, key_for: KeyLookup, *, issuer: str, audience: str, leeway: float, capacity: int = 10_000, max_age: float = 60.0
    ) -> None:
        self._key_for = key_for
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        self._capacity = capacity
        self._max_age = max_age
        self._verified: OrderedDict[bytes, _Verified] = OrderedDict()

    def __len__(self) -> int:
        """How many verified tokens are remembered."""
        return len(self._verified)

    async def claims(self, token: str) -> dict:
        """The claims of a valid token; Unauthorized (never anything else) for any invalid one."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        now = time.time()
        known = self._verified.get(digest)
        if known is not None and now < known.until and await self._key_for(known.kid) is known.key:
            self._verified.move_to_end(digest)
            return known.claims
        kid, key = await self._signing_key(token)
        claims = self._decode(token, key)
        self._verified[digest] = _Verified(claims, kid, key, min(float(claims["exp"]), now + self._max_age))
        self._verified.move_to_end(digest)
        self._forget_stale(now)
        return claims

    def _forget_stale(self, now: float) -> None:
        """Drop what is over capacity, and the least recently used entries that are past their time: an
        entry unused for ``max_age`` seconds always is, so under login churn the memory holds about one
        ``max_age`` of tokens instead of filling up to ``capacity`` with dead ones."""
        while self._verified:
            oldest = next(iter(self._verified.values()))
            if len(self._verified) <= self._capacity and oldest.until > now:
                return
            self._verified.popitem(last=False)

    async def _signing_key(self, token: str) -> tuple[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("The access token is malformed.", code="invalid_token") from None
        if header.get("alg") != ALGORITHM:
            raise Unauthorized(f"Access tokens must be signed with {ALGORITHM}.", code="invalid_token")
        kid = header.get("kid")
        key = await self._key_for(kid) if isinstance(kid, str) else None
        if key is None:
            raise Unauthorized("The access token was signed with an unknown key.", code="invalid_token")
        return kid, key

    def _decode(self, token: str, key: Any) -> dict:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "iss", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The access token has expired.", code="token_expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("The access token is not valid yet.", code="invalid_token") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("The access token comes from another issuer.", code="invalid_token") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("The access token is meant for another audience.", code="invalid_token") from None
        except jwt.PyJWTError:
            raise Unauthorized("The access token is invalid.", code="invalid_token") from None


@dataclass(frozen=True, slots=True)
class _Verified:
    claims: dict
    kid: str
    key: Any
    until: float  # time.time() after which the token is checked again


def identity_from_claims(claims: dict, *, guest_role: str, client_id: str | None = None) -> Identity:
    """Roles are the realm roles plus the roles of our own client (Keycloak's layout; the built-in
    issuer writes the same ``realm_access`` claim). Other clients' roles are not ours to honour: an
    ``admin`` role of some other application must not make its holder an administrator here."""
    roles: list[str] = list(_strings((claims.get("realm_access") or {}).get("roles")))
    own_client = (claims.get("resource_access") or {}).get(client_id) if client_id else None
    roles += [role for role in _strings((own_client or {}).get("roles")) if role not in roles]
    return Identity(
        issuer=claims["iss"],
        subject=str(claims["sub"]),
        username=claims.get("preferred_username"),
        email=claims.get("email"),
        name=claims.get("name"),
        roles=tuple(roles),
        is_guest=guest_role in roles or str(claims.get("guest", "")).lower() == "true",
    )


def _strings(value: object) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []
