"""Verifying RS256 access tokens, whoever issued them (the built-in issuer or Keycloak).

Only RS256 is accepted, whatever the token's header says: that closes ``alg: none`` and the
"HS256 signed with the public key" confusion. The key is chosen by ``kid`` from the issuer's key
set; ``iss`` must match exactly, ``aud`` must contain the configured audience, and ``exp``/``nbf``
are checked with a small clock-skew allowance.
"""

from __future__ import annotations

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


async def verify_access_token(token: str, key_for: KeyLookup, *, issuer: str, audience: str, leeway: float) -> dict:
    """The claims of a valid token; Unauthorized (never anything else) for any invalid one."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Unauthorized("The access token is malformed.", code="invalid_token") from None
    if header.get("alg") != ALGORITHM:
        raise Unauthorized(f"Access tokens must be signed with {ALGORITHM}.", code="invalid_token")
    kid = header.get("kid")
    key = await key_for(kid) if isinstance(kid, str) else None
    if key is None:
        raise Unauthorized("The access token was signed with an unknown key.", code="invalid_token")
    try:
        return jwt.decode(
            token, key, algorithms=[ALGORITHM], issuer=issuer, audience=audience, leeway=leeway,
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
