"""API keys: ``sk_`` secrets shown once, stored as keyed hashes, capped per user, expiring."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from llm_api.config import Settings
from llm_api.crypto import Keyring
from llm_api.db import api_keys
from llm_api.db.pool import Database
from llm_api.errors import Conflict, NotFound, Unauthorized
from llm_api.ids import new_id

KEY_PREFIX = "sk_"
HASH_PURPOSE = "api-key"
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_SECRET_LENGTH = 40  # about 238 bits


@dataclass(frozen=True)
class KeyOwner:
    """The user an API key belongs to, as needed to build a principal."""

    user_id: str
    issuer: str
    subject: str
    username: str | None
    email: str | None
    name: str | None
    is_guest: bool


class ApiKeys:
    def __init__(self, db: Database, keyring: Keyring, settings: Settings) -> None:
        self._db = db
        self._keyring = keyring
        self._max_per_user = settings.api_key_max_per_user
        self._default_ttl = timedelta(seconds=settings.api_key_default_ttl)
        self._max_ttl = timedelta(seconds=settings.api_key_max_ttl)

    async def create(self, user_id: str, name: str, expires_in_days: int | None) -> tuple[dict, str]:
        """The new key's row and its secret (which is not kept)."""
        ttl = self._default_ttl if expires_in_days is None else min(timedelta(days=expires_in_days), self._max_ttl)
        secret = KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(_SECRET_LENGTH))
        async with self._db.transaction() as tx:
            await api_keys.lock_user(tx, user_id)
            if await api_keys.count_active(tx, user_id) >= self._max_per_user:
                raise Conflict(
                    f"You already have {self._max_per_user} active API keys; revoke one first.", code="api_key_limit_reached"
                )
            row = await api_keys.insert(
                tx,
                key_id=new_id("key"),
                user_id=user_id,
                name=name.strip(),
                key_hash=self._hash(secret),
                prefix=secret[:7],
                suffix=secret[-4:],
                ttl=ttl,
            )
        return row, secret

    async def list(self, user_id: str) -> list[dict]:
        return await api_keys.list_for_user(self._db, user_id)

    async def revoke(self, user_id: str, key_id: str) -> None:
        if not await api_keys.revoke(self._db, key_id=key_id, user_id=user_id):
            raise NotFound(f"API key {key_id} not found.", param="key_id")

    async def authenticate(self, secret: str) -> KeyOwner:
        key_hash = self._hash(secret)
        row = await api_keys.find_by_hash(self._db, key_hash)
        # The lookup goes through an index on the keyed hash; comparing again in constant time costs
        # nothing and keeps the check independent of how the index compares.
        if row is None or not hmac.compare_digest(bytes(row["key_hash"]), key_hash):
            raise Unauthorized("The API key is not valid.", code="invalid_api_key")
        if row["revoked_at"] is not None:
            raise Unauthorized("The API key was revoked.", code="invalid_api_key")
        if row["expired"]:
            raise Unauthorized("The API key has expired.", code="invalid_api_key")
        await api_keys.touch(self._db, row["id"])
        return KeyOwner(
            user_id=row["user_id"],
            issuer=row["issuer"],
            subject=row["subject"],
            username=row["username"],
            email=row["email"],
            name=row["name"],
            is_guest=row["is_guest"],
        )

    def _hash(self, secret: str) -> bytes:
        return self._keyring.hash_secret(HASH_PURPOSE, secret)


def status_of(row: dict, now) -> str:
    if row["revoked_at"] is not None:
        return "revoked"
    if row["expires_at"] is not None and row["expires_at"] <= now:
        return "expired"
    return "active"
