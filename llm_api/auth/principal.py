"""Who is calling: credentials as presented, and the principal they prove."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from llm_api.errors import Unauthorized


@dataclass(frozen=True, slots=True)
class Credentials:
    """A credential exactly as presented: a bearer token (JWT or ``sk_`` key) or an ``X-API-Key`` value."""

    scheme: Literal["bearer", "api_key"]
    value: str

    def __repr__(self) -> str:  # never let a secret reach a log line through repr()
        return f"Credentials(scheme={self.scheme!r}, value=<{len(self.value)} chars>)"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    user_id: str
    subject: str
    issuer: str
    auth_method: Literal["jwt", "apikey"]
    username: str | None = None
    email: str | None = None
    name: str | None = None
    roles: tuple[str, ...] = ()
    is_guest: bool = False

    @property
    def is_admin(self) -> bool:
        return any(role.lower() == "admin" for role in self.roles)


def extract_credentials(headers: Mapping[str, str]) -> Credentials | None:
    """The credential a request presents: ``Authorization: Bearer ...`` first, else ``X-API-Key``.

    A malformed Authorization header is refused rather than ignored, so that a typo never silently
    falls back to another credential.
    """
    authorization = headers.get("Authorization")
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not _is_token_text(token):
            raise Unauthorized("The Authorization header must be 'Bearer <token>'.", code="invalid_authorization_header")
        return Credentials("bearer", token)
    api_key = headers.get("X-API-Key")
    if api_key is not None and api_key.strip():
        if not _is_token_text(api_key.strip()):
            raise Unauthorized("The API key is not valid.", code="invalid_api_key")
        return Credentials("api_key", api_key.strip())
    return None


def _is_token_text(value: str) -> bool:
    """Tokens and keys are printable ASCII. Anything else (aiohttp hands undecodable header bytes
    over as lone surrogates) cannot be a credential, and must not reach hashing or decoding."""
    return bool(value) and value.isascii() and value.isprintable()
