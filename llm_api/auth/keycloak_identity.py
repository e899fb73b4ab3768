"""Identity from Keycloak: its tokens, verified against its JWKS; guests provisioned through it."""

from __future__ import annotations

import time

from llm_api.auth.keycloak import KeycloakClient
from llm_api.auth.remote_jwks import RemoteJwks
from llm_api.auth.sessions import TokenSet
from llm_api.auth.tokens import AccessTokens, Identity, identity_from_claims
from llm_api.auth.users import UserDirectory
from llm_api.config import Settings
from llm_api.errors import ServiceUnavailable, Unauthorized


class KeycloakIdentity:
    def __init__(self, client: KeycloakClient | None, jwks: RemoteJwks, directory: UserDirectory, settings: Settings) -> None:
        self._client = client
        self._jwks = jwks
        self._directory = directory
        self._settings = settings
        self._tokens = AccessTokens(
            jwks.key_for, issuer=settings.token_issuer, audience=settings.account, leeway=settings.auth_clock_skew
        )

    async def guest_login(self) -> TokenSet:
        return await self._session(await self._keycloak().provision_guest())

    async def refresh(self, refresh_token: str) -> TokenSet:
        return await self._session(await self._keycloak().refresh(refresh_token))

    async def logout(self, refresh_token: str) -> None:
        if self._client is not None:
            await self._client.logout(refresh_token)

    async def verify(self, access_token: str) -> Identity:
        claims = await self._tokens.claims(access_token)
        azp = claims.get("azp")
        if azp is not None and azp != self._settings.client_id:
            # As the original: a token minted for another client (an admin console, say) is not for us.
            raise Unauthorized("The access token was issued to another client.", code="invalid_token")
        return identity_from_claims(claims, guest_role=self._settings.guest_role, client_id=self._settings.client_id)

    def jwks(self) -> dict:
        return {"keys": []}  # this service signs nothing in Keycloak mode

    async def ready(self) -> None:
        await self._jwks.ensure_loaded()

    async def _session(self, tokens: dict) -> TokenSet:
        identity = await self.verify(tokens["access_token"])
        user_id = await self._directory.register(identity)
        expires_in = int(tokens.get("expires_in", 0))
        return TokenSet(
            access_token=tokens["access_token"],
            refresh_token=tokens.get("refresh_token", ""),
            expires_in=expires_in,
            expires_at=int(time.time()) + expires_in,
            refresh_expires_in=int(tokens.get("refresh_expires_in", 0)),
            user_id=user_id,
            username=identity.username or identity.subject,
        )

    def _keycloak(self) -> KeycloakClient:
        if self._client is None:
            raise ServiceUnavailable(
                "Guest login and refresh need KEYCLOAK_BASE_URL (only JWKS_URL is configured).",
                param="keycloak",
                code="identity_provider_not_configured",
            )
        return self._client
