"""Keycloak's REST API, for what llm-api asks of it: guest provisioning, refresh, logout.

Guest provisioning follows the original service: with an admin token (the master realm's admin
user, else the backend client's service account), create the user, give it the guest role, set a
random password, then sign in as the guest with the password grant.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

import aiohttp

from llm_api.config import Settings
from llm_api.errors import ServiceUnavailable, Unauthorized, UpstreamError

log = logging.getLogger(__name__)


class KeycloakClient:
    def __init__(self, session: aiohttp.ClientSession, settings: Settings, *, timeout: float = 10.0) -> None:
        if not settings.keycloak_base_url:
            raise ValueError("KeycloakClient needs KEYCLOAK_BASE_URL")
        self._session = session
        self._settings = settings
        self._base = settings.keycloak_base_url.rstrip("/")
        self._realm = settings.keycloak_realm
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._admin_token: tuple[str, float] | None = None

    @property
    def _token_url(self) -> str:
        return f"{self._base}/realms/{self._realm}/protocol/openid-connect/token"

    async def provision_guest(self) -> dict[str, Any]:
        """Create a guest user and return the token response of its first sign-in."""
        username = f"guest-{uuid.uuid4()}"
        password = uuid.uuid4().hex + uuid.uuid4().hex
        admin = await self._admin_headers()
        users = f"{self._base}/admin/realms/{self._realm}/users"
        created = await self._call(
            "POST",
            users,
            headers=admin,
            json={
                "username": username,
                "email": f"{username}@temp.jan.ai",
                "enabled": True,
                "emailVerified": False,
                "attributes": {"guest": ["true"]},
            },
            expect=(201,),
        )
        location = created.headers.get("Location", "")
        user_id = location.rstrip("/").rsplit("/", 1)[-1]
        if not user_id:
            raise UpstreamError("Keycloak created the guest but did not say where.", code="identity_provider_error")
        role = await self._call(
            "GET", f"{self._base}/admin/realms/{self._realm}/roles/{self._settings.guest_role}", headers=admin, expect=(200,)
        )
        await self._call("POST", f"{users}/{user_id}/role-mappings/realm", headers=admin, json=[role.json], expect=(204,))
        await self._call(
            "PUT",
            f"{users}/{user_id}/reset-password",
            headers=admin,
            json={"type": "password", "value": password, "temporary": False},
            expect=(204,),
        )
        form = {"grant_type": "password", "username": username, "password": password, **self._client_form()}
        try:
            return await self._token(form)
        except _Refused as refusal:  # the guest was just made: Keycloak's set-up is at fault, not the caller
            raise _misconfigured("the new guest's sign-in", refusal) from None

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token, **self._client_form()}
        try:
            return await self._token(form)
        except _Refused as refusal:
            raise Unauthorized(
                f"Keycloak refused the refresh token: {refusal.description}", code="invalid_refresh_token"
            ) from None

    async def logout(self, refresh_token: str) -> None:
        """End the Keycloak session; best effort, as logging out must always succeed for the client."""
        url = f"{self._base}/realms/{self._realm}/protocol/openid-connect/logout"
        try:
            await self._call("POST", url, data={"refresh_token": refresh_token, **self._client_form()}, expect=(200, 204))
        except (UpstreamError, ServiceUnavailable, Unauthorized) as error:
            log.warning("Keycloak logout failed: %s", error.message)

    async def _admin_headers(self) -> dict[str, str]:
        if self._admin_token is None or time.monotonic() >= self._admin_token[1]:
            settings = self._settings
            if settings.keycloak_admin and settings.keycloak_admin_password:
                url = f"{self._base}/realms/{settings.keycloak_admin_realm}/protocol/openid-connect/token"
                form = {
                    "grant_type": "password",
                    "client_id": settings.keycloak_admin_client_id,
                    "username": settings.keycloak_admin,
                    "password": settings.keycloak_admin_password,
                }
            elif settings.backend_client_id and settings.backend_client_secret:
                url = self._token_url
                form = {
                    "grant_type": "client_credentials",
                    "client_id": settings.backend_client_id,
                    "client_secret": settings.backend_client_secret,
                }
            else:
                raise ServiceUnavailable(
                    "Guest login needs Keycloak admin credentials (KEYCLOAK_ADMIN and KEYCLOAK_ADMIN_PASSWORD, "
                    "or BACKEND_CLIENT_ID and BACKEND_CLIENT_SECRET).",
                    param="keycloak",
                    code="identity_provider_not_configured",
                )
            try:
                tokens = await self._token(form, url=url)
            except _Refused as refusal:
                raise _misconfigured("the admin sign-in", refusal) from None
            # Renew a little early, so a token never expires between the check and its use.
            self._admin_token = (tokens["access_token"], time.monotonic() + max(int(tokens.get("expires_in", 60)) - 30, 5))
        return {"Authorization": f"Bearer {self._admin_token[0]}"}

    def _client_form(self) -> dict[str, str]:
        form = {"client_id": self._settings.client_id}
        # Only the confidential backend client has a secret; the public client (jan-client) has none.
        if self._settings.client_id == self._settings.backend_client_id and self._settings.backend_client_secret:
            form["client_secret"] = self._settings.backend_client_secret
        return form

    async def _token(self, form: dict, *, url: str | None = None) -> dict[str, Any]:
        """A token endpoint's answer; raises _Refused when Keycloak turns the grant down."""
        return (await self._call("POST", url or self._token_url, data=form, expect=(200,))).json

    async def _call(self, method: str, url: str, *, expect: tuple[int, ...], **kwargs) -> _Response:
        try:
            async with self._session.request(method, url, timeout=self._timeout, **kwargs) as response:
                body = await response.read()
                result = _Response(response.status, response.headers.copy(), body)
        except (TimeoutError, aiohttp.ClientError) as error:
            raise UpstreamError(
                f"Keycloak is unreachable: {error or type(error).__name__}", code="identity_provider_error"
            ) from None
        if result.status in expect:
            return result
        if result.status in (400, 401) and "/protocol/openid-connect/" in url:
            raise _Refused(result.description)
        raise UpstreamError(
            f"Keycloak answered {result.status} to {method} {url.removeprefix(self._base)}: {result.description}",
            code="identity_provider_error",
        )


def _misconfigured(step: str, refusal: _Refused) -> UpstreamError:
    return UpstreamError(f"Keycloak refused {step}: {refusal.description}", code="identity_provider_error")


class _Refused(Exception):
    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class _Response:
    def __init__(self, status: int, headers, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self._body = body

    @property
    def json(self) -> Any:
        try:
            return json.loads(self._body or b"null")
        except ValueError:
            raise UpstreamError("Keycloak answered something that is not JSON.", code="identity_provider_error") from None

    @property
    def description(self) -> str:
        try:
            data = self.json
        except UpstreamError:
            return self._body[:200].decode(errors="replace")
        if isinstance(data, dict):
            return str(data.get("error_description") or data.get("errorMessage") or data.get("error") or data)
        return str(data)
