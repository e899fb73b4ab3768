"""Secrets at rest, all derived from one master secret (LLM_API_SECRET_KEY).

Each use gets its own key, derived with HKDF and a purpose label, so that (for instance) the key
that hashes API keys can never decrypt a signing key:

- ``hash_secret``: a keyed hash (HMAC-SHA256) of a secret the service only needs to recognise
  later (API keys, refresh tokens). A stolen database does not give the secrets back, and without
  the master secret the hashes cannot even be brute-forced offline.
- ``seal`` / ``unseal``: AES-256-GCM for secrets the service must use again (the issuer's private
  keys, provider API keys); the purpose is bound in as associated data.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_NONCE_BYTES = 12


class SealError(ValueError):
    """Sealed data could not be opened: tampered, or sealed under another master secret."""


class Keyring:
    def __init__(self, master_secret: str) -> None:
        if len(master_secret) < 32:
            raise ValueError("the master secret must be at least 32 characters")
        self._master = master_secret.encode("utf-8")
        self._keys: dict[str, bytes] = {}

    def _key(self, purpose: str) -> bytes:
        key = self._keys.get(purpose)
        if key is None:
            hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"llm-api/v1", info=purpose.encode())
            key = self._keys[purpose] = hkdf.derive(self._master)
        return key

    def hash_secret(self, purpose: str, secret: str) -> bytes:
        return hmac.new(self._key(purpose), secret.encode("utf-8"), hashlib.sha256).digest()

    def seal(self, purpose: str, plaintext: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + AESGCM(self._key(purpose)).encrypt(nonce, plaintext, purpose.encode())

    def unseal(self, purpose: str, sealed: bytes) -> bytes:
        try:
            return AESGCM(self._key(purpose)).decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], purpose.encode())
        except (InvalidTag, ValueError) as error:
            raise SealError(
                f"cannot open a sealed {purpose}: LLM_API_SECRET_KEY differs from the one it was sealed with"
            ) from error
