"""Verified access tokens are remembered, but never beyond what a fresh check would accept.

The verifier is driven directly with a real RSA key and a key set the test controls.
"""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from llm_api.auth.tokens import AccessTokens
from llm_api.errors import Unauthorized

ISSUER, AUDIENCE = "https://issuer.test/realms/jan", "account"


class KeySet:
    """The issuer's keys by kid, as RemoteJwks or the built-in issuer hand them out."""

    def __init__(self) -> None:
        self.keys = {}
        self.lookups = 0

    def add(self, kid: str) -> rsa.RSAPrivateKey:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.keys[kid] = private.public_key()
        return private

    async def key_for(self, kid: str):
        self.lookups += 1
        return self.keys.get(kid)


def token(private, kid: str, *, lifetime: float = 300, **claims) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + lifetime, **claims}
    return jwt.encode(body, private, algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def keys() -> KeySet:
    return KeySet()


def verifier(keys: KeySet, **options) -> AccessTokens:
    return AccessTokens(keys.key_for, issuer=ISSUER, audience=AUDIENCE, leeway=0, **options)


async def test_a_remembered_token_still_needs_its_key(keys):
    private = keys.add("k1")
    tokens, alice = verifier(keys), token(private, "k1")
    assert (await tokens.claims(alice))["sub"] == "alice"
    assert (await tokens.claims(alice))["sub"] == "alice"
    assert keys.lookups == 2  # the key is looked up on every use
    del keys.keys["k1"]  # the issuer dropped the key
    with pytest.raises(Unauthorized):
        await tokens.claims(alice)


async def test_a_replaced_key_with_the_same_kid_checks_the_signature_again(keys):
    tokens, alice = verifier(keys), token(keys.add("k1"), "k1")
    await tokens.claims(alice)
    keys.add("k1")  # another key under the same kid: alice's signature no longer matches
    with pytest.raises(Unauthorized):
        await tokens.claims(alice)


async def test_a_remembered_token_expires_when_the_token_does(keys):
    tokens, short = verifier(keys), token(keys.add("k1"), "k1", lifetime=1)
    await tokens.claims(short)
    await asyncio.sleep(1.2)
    with pytest.raises(Unauthorized) as refused:
        await tokens.claims(short)
    assert refused.value.code == "token_expired"


async def test_a_tampered_copy_of_a_remembered_token_is_refused(keys):
    tokens, alice = verifier(keys), token(keys.add("k1"), "k1")
    await tokens.claims(alice)
    header, payload, signature = alice.split(".")
    forged_payload = jwt.utils.base64url_encode(
        b'{"iss":"%s","aud":"account","sub":"admin","iat":1,"exp":9999999999}' % ISSUER.encode()
    ).decode()
    with pytest.raises(Unauthorized):
        await tokens.claims(f"{header}.{forged_payload}.{signature}")


async def test_failures_are_not_remembered_and_the_memory_is_bounded(keys):
    private = keys.add("k1")
    tokens = verifier(keys, capacity=2)
    early = token(private, "k1", nbf=int(time.time()) + 1)
    with pytest.raises(Unauthorized):
        await tokens.claims(early)
    await asyncio.sleep(1.1)
    assert (await tokens.claims(early))["sub"] == "alice"  # checked again, and now valid
    for n in range(3):
        await tokens.claims(token(private, "k1", sub=f"user{n}"))
    assert len(tokens) == 2


async def test_tokens_no_longer_used_are_forgotten_before_the_memory_is_full(keys):
    private = keys.add("k1")
    tokens = verifier(keys, max_age=1)
    for n in range(5):
        await tokens.claims(token(private, "k1", sub=f"user{n}"))
    assert len(tokens) == 5
    await asyncio.sleep(1.1)  # past max_age: every one of them would be checked in full again
    fresh = token(private, "k1", sub="newcomer")
    await tokens.claims(fresh)
    assert len(tokens) == 1
    assert (await tokens.claims(fresh))["sub"] == "newcomer"
