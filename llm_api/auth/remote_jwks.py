"""An identity provider's signing keys, fetched from its JWKS URL and kept in memory.

Keys are refreshed every JWKS_REFRESH_INTERVAL, and at once when a token names a key we do not
know (the provider rotated), but never more than once per ``min_refetch_interval``: tokens with
made-up kids must not turn into a flood of requests to the provider.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
import jwt

log = logging.getLogger(__name__)


class JwksUnavailable(RuntimeError):
    """The key set could not be fetched or parsed."""


class RemoteJwks:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        refresh_interval: float,
        min_refetch_interval: float = 10.0,
        timeout: float = 5.0,
    ) -> None:
        self._session = session
        self._url = url
        self._refresh_interval = refresh_interval
        self._min_refetch_interval = min_refetch_interval
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._attempted_at = float("-inf")
        self._lock = asyncio.Lock()

    async def key_for(self, kid: str) -> Any | None:
        stale = self._fetched_at is None or time.monotonic() - self._fetched_at >= self._refresh_interval
        if stale or kid not in self._keys:
            await self._refresh_quietly()
        return self._keys.get(kid)

    async def ensure_loaded(self) -> None:
        """Readiness: raise JwksUnavailable unless a key set was loaded at least once."""
        if self._fetched_at is None:
            await self.refresh()

    async def refresh(self) -> None:
        async with self._lock:
            self._attempted_at = time.monotonic()
            try:
                async with self._session.get(self._url, timeout=self._timeout) as response:
                    response.raise_for_status()
                    document = await response.json(content_type=None)
                keys = {key.key_id: key.key for key in jwt.PyJWKSet.from_dict(document).keys if key.key_id}
            except (TimeoutError, aiohttp.ClientError, jwt.PyJWKSetError, ValueError, TypeError) as error:
                raise JwksUnavailable(f"cannot load the JWKS from {self._url}: {error or type(error).__name__}") from error
            self._keys = keys
            self._fetched_at = time.monotonic()

    async def _refresh_quietly(self) -> None:
        if time.monotonic() - self._attempted_at < self._min_refetch_interval:
            return
        try:
            await self.refresh()
        except JwksUnavailable as error:
            log.warning("%s; keeping the keys already known", error)
