"""Identity without an external provider: guests, tokens from the built-in issuer, refresh tokens
kept (as keyed hashes) in PostgreSQL."""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import timedelta

from llm_api.auth.builtin_issuer import BuiltInIssuer
from llm_api.auth.sessions import TokenSet
from llm_api.auth.tokens import AccessTokens, Identity, identity_from_claims
from llm_api.auth.users import UserDirectory
from llm_api.crypto import Keyring
from llm_api.db import refresh_tokens, users
from llm_api.db.pool import Database
from llm_api.errors import Unauthorized
from llm_api.ids import new_id

REFRESH_HASH_PURPOSE = "refresh-token"


class BuiltInIdentity:
    def __init__(
        self,
        db: Database,
        keyring: Keyring,
        issuer: BuiltInIssuer,
        directory: UserDirectory,
        *,
        refresh_ttl: float,
        leeway: float,
        guest_role: str,
    ) -> None:
        self._db = db
        self._keyring = keyring
        self._issuer = issuer
        self._directory = directory
        self._refresh_ttl = timedelta(seconds=refresh_ttl)
        self._guest_role = guest_role
        self._tokens = AccessTokens(issuer.key_for, issuer=issuer.issuer, audience=issuer.audience, leeway=leeway)

    async def guest_login(self) -> TokenSet:
        subject = str(uuid.uuid4())
        identity = Identity(
            issuer=self._issuer.issuer,
            subject=subject,
            username=f"guest-{subject[:8]}",
            email=None,
            name=None,
            roles=(self._guest_role,),
            is_guest=True,
        )
        user_id = await self._directory.register(identity)
        refresh_token = await self._new_refresh_token(user_id, family=new_id("fam"))
        return await self._token_set(user_id, identity, refresh_token)

    async def refresh(self, refresh_token: str) -> TokenSet:
        token_hash = self._hash(refresh_token)
        async with self._db.transaction() as tx:
            spent = await refresh_tokens.spend(tx, token_hash)
            if spent is not None:
                new_token = _new_secret()
                await refresh_tokens.insert(
                    tx,
                    token_hash=self._hash(new_token),
                    family=spent["family"],
                    user_id=spent["user_id"],
                    ttl=self._refresh_ttl,
                )
        if spent is None:
            await self._refuse(token_hash)
        user = await users.get_user(self._db, spent["user_id"])
        identity = Identity(
            issuer=user["issuer"],
            subject=user["subject"],
            username=user["username"],
            email=user["email"],
            name=user["name"],
            roles=(self._guest_role,) if user["is_guest"] else (),
            is_guest=user["is_guest"],
        )
        return await self._token_set(user["id"], identity, new_token)

    async def logout(self, refresh_token: str) -> None:
        """Revoke the login the token belongs to; unknown tokens are ignored (logging out is idempotent)."""
        row = await refresh_tokens.find(self._db, self._hash(refresh_token))
        if row is not None:
            await refresh_tokens.revoke_family(self._db, row["family"])

    async def verify(self, access_token: str) -> Identity:
        claims = await self._tokens.claims(access_token)
        return identity_from_claims(claims, guest_role=self._guest_role)

    def jwks(self) -> dict:
        return self._issuer.jwks()

    async def _refuse(self, token_hash: bytes) -> None:
        row = await refresh_tokens.find(self._db, token_hash)
        if row is not None and row["used_at"] is not None and row["revoked_at"] is None:
            # A spent token came back: it was stolen, or the client raced itself. Either way the
            # login is compromised, so every token of its family stops working.
            await refresh_tokens.revoke_family(self._db, row["family"])
            raise Unauthorized("The refresh token was already used; the session is revoked.", code="refresh_token_reused")
        raise Unauthorized("The refresh token is invalid, expired or revoked.", code="invalid_refresh_token")

    async def _new_refresh_token(self, user_id: str, *, family: str) -> str:
        token = _new_secret()
        await refresh_tokens.insert(self._db, token_hash=self._hash(token), family=family, user_id=user_id, ttl=self._refresh_ttl)
        return token

    async def _token_set(self, user_id: str, identity: Identity, refresh_token: str) -> TokenSet:
        access_token = await self._issuer.sign(
            {
                "sub": identity.subject,
                "typ": "Bearer",
                "preferred_username": identity.username,
                "realm_access": {"roles": list(identity.roles)},
                "guest": "true" if identity.is_guest else "false",
            }
        )
        ttl = int(self._issuer.access_ttl)
        return TokenSet(
            access_token=access_token,
            refresh_token=refresh_token,
            expires_in=ttl,
            expires_at=int(time.time()) + ttl,
            refresh_expires_in=int(self._refresh_ttl.total_seconds()),
            user_id=user_id,
            username=identity.username or identity.subject,
        )

    def _hash(self, token: str) -> bytes:
        return self._keyring.hash_secret(REFRESH_HASH_PURPOSE, token)


def _new_secret() -> str:
    return "rt_" + secrets.token_urlsafe(32)
