"""The built-in token issuer: RS256 keys kept (sealed) in PostgreSQL, so every worker and every
restart signs and verifies with the same keys.

Rotation: when the current key is older than SIGNING_KEY_ROTATION, whichever worker notices first
makes a new one (under an advisory lock, so only one does); the old key is retired but stays
published, and usable for verification, until every token it signed has expired.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from llm_api.auth.tokens import ALGORITHM
from llm_api.crypto import Keyring
from llm_api.db import signing_keys
from llm_api.db.pool import Database
from llm_api.ids import new_id

log = logging.getLogger(__name__)

SEAL_PURPOSE = "signing-key"
# An unknown kid makes us re-read the keys (another worker may have rotated), at most this often.
_RELOAD_INTERVAL = 5.0


@dataclass(frozen=True)
class _Key:
    kid: str
    public_jwk: dict
    public_key: Any
    created_at: datetime
    retired_at: datetime | None


class BuiltInIssuer:
    def __init__(
        self,
        db: Database,
        keyring: Keyring,
        *,
        issuer: str,
        audience: str,
        access_ttl: float,
        rotation_after: float,
        leeway: float,
    ) -> None:
        self._db = db
        self._keyring = keyring
        self.issuer = issuer
        self.audience = audience
        self.access_ttl = access_ttl
        self._rotation_after = timedelta(seconds=rotation_after)
        # A retired key is kept as long as a token it signed can still be presented.
        self._keep = timedelta(seconds=access_ttl + leeway)
        self._keys: dict[str, _Key] = {}
        self._signing: tuple[str, Any] | None = None  # (kid, private key) of the current key
        self._signing_created_at: datetime | None = None
        self._last_reload = 0.0

    async def start(self) -> None:
        await self._reload()
        await self.rotate_if_due()

    async def rotate_if_due(self) -> None:
        if self._signing_created_at is None or self._due(self._signing_created_at):
            await self.rotate(force=False)

    async def rotate(self, *, force: bool = True) -> None:
        """Make a new current key (unless another worker just did, when not forced)."""
        async with self._db.transaction() as tx:
            await signing_keys.lock_for_rotation(tx)
            rows = await signing_keys.current_and_recent(tx, self._keep)
            current = next((row for row in rows if row["retired_at"] is None), None)
            if force or current is None or self._due(current["created_at"]):
                kid, public_jwk, sealed = self._new_key()
                await signing_keys.replace_current(tx, kid=kid, public_jwk=public_jwk, private_key_sealed=sealed)
                log.info("built-in issuer: new signing key %s", kid)
        await self._reload()

    async def sign(self, claims: dict) -> str:
        """A token with ``iss``, ``aud``, ``iat``, ``exp`` and ``jti`` added to ``claims``."""
        await self.rotate_if_due()  # cheap unless a rotation is due
        kid, private_key = self._signing
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + int(self.access_ttl),
            "jti": uuid.uuid4().hex,
            **claims,
        }
        return jwt.encode(payload, private_key, algorithm=ALGORITHM, headers={"kid": kid, "typ": "JWT"})

    async def key_for(self, kid: str) -> Any | None:
        key = self._keys.get(kid)
        if key is None and time.monotonic() - self._last_reload >= _RELOAD_INTERVAL:
            await self._reload()
            key = self._keys.get(kid)
        if key is None or (key.retired_at is not None and key.retired_at + self._keep < _now()):
            return None
        return key.public_key

    def jwks(self) -> dict:
        now = _now()
        return {
            "keys": [key.public_jwk for key in self._keys.values() if key.retired_at is None or key.retired_at + self._keep > now]
        }

    async def _reload(self) -> None:
        rows = await signing_keys.published_keys(self._db, self._keep)
        self._keys = {
            row["kid"]: _Key(
                kid=row["kid"],
                public_jwk=row["public_jwk"],
                public_key=jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(row["public_jwk"])),
                created_at=row["created_at"],
                retired_at=row["retired_at"],
            )
            for row in rows
        }
        current = next((row for row in rows if row["retired_at"] is None), None)
        if current is not None:
            pem = self._keyring.unseal(SEAL_PURPOSE, bytes(current["private_key_sealed"]))
            self._signing = (current["kid"], serialization.load_pem_private_key(pem, password=None))
            self._signing_created_at = current["created_at"]
        self._last_reload = time.monotonic()

    def _due(self, created_at: datetime) -> bool:
        return _now() - created_at >= self._rotation_after

    def _new_key(self) -> tuple[str, dict, bytes]:
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        kid = new_id("sig")
        public_jwk = {
            **jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True),
            "kid": kid,
            "use": "sig",
            "alg": ALGORITHM,
        }
        pem = private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return kid, public_jwk, self._keyring.seal(SEAL_PURPOSE, pem)


def _now() -> datetime:
    return datetime.now(UTC)
