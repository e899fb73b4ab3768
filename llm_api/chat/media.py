"""Jan media ids in image parts, resolved through the media API before a provider is called.

An image part's URL may name a media id instead of an image: bare (``jan_01hq...``, as the Jan
docs show), ``data:image/<type>;jan_<id>`` or ``data:image/<type>;base64,jan_<id>``. Each distinct id
is resolved with its own ``POST {MEDIA_RESOLVE_URL}`` in the original's format
(``{"payload": {"messages": [...]}}``, the media API replacing ``data:image/...;jan_<id>`` with a
short-lived URL), so that a refusal names the id it is about. The caller's credentials are forwarded:
one user cannot resolve another's media.

Only the request sent to the provider carries the resolved URLs; the conversation keeps the ids
(resolved URLs expire).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any

import aiohttp

from llm_api.errors import InvalidRequest, UpstreamError, UpstreamTimeout

_MEDIA_URL = re.compile(r"^(?:data:(image/[a-z0-9.+-]+);(?:base64,)?)?(jan_[A-Za-z0-9]+)$")


def image_urls(messages: list[dict[str, Any]]) -> list[str]:
    """Every image URL of the request, in order."""
    return [
        part["image_url"]["url"]
        for message in messages
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if part.get("type") == "image_url"
    ]


def media_id(url: str) -> str | None:
    match = _MEDIA_URL.match(url)
    return match.group(2) if match else None


class MediaResolver:
    def __init__(self, session: aiohttp.ClientSession, resolve_url: str | None, timeout: float) -> None:
        self._session = session
        self._resolve_url = resolve_url
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def resolved(self, messages: list[dict[str, Any]], credentials: Mapping[str, str]) -> list[dict[str, Any]]:
        """The messages with every media id replaced by a URL the provider can fetch."""
        ids = sorted({found for url in image_urls(messages) if (found := media_id(url))})
        if not ids:
            return messages
        if not self._resolve_url:
            raise UpstreamError(
                "This service cannot resolve jan_ media ids: MEDIA_RESOLVE_URL is not configured.",
                code="media_resolution_unavailable",
            )
        urls = dict(zip(ids, await asyncio.gather(*(self._resolve(one, credentials) for one in ids)), strict=True))
        return [_with_urls(message, urls) for message in messages]

    async def _resolve(self, media: str, credentials: Mapping[str, str]) -> str:
        placeholder = f"data:image/png;{media}"
        payload = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": placeholder}}]}]}
        try:
            async with self._session.post(
                self._resolve_url, json={"payload": payload}, headers=dict(credentials), timeout=self._timeout
            ) as response:
                if response.status in (401, 403, 404):  # unknown, or not the caller's: alike, by design
                    raise InvalidRequest(f"Unknown media id {media}.", param="messages", code="media_not_found")
                if response.status != 200:
                    raise UpstreamError(
                        f"The media service answered {response.status} resolving {media}.", code="media_service_error"
                    )
                answer = await response.json(content_type=None)
        except TimeoutError:
            raise UpstreamTimeout(f"The media service did not resolve {media} in time.", code="media_service_timeout") from None
        except aiohttp.ClientError as error:
            raise UpstreamError(
                f"The media service cannot be reached: {str(error) or type(error).__name__}.", code="media_service_unavailable"
            ) from None
        try:
            url = answer["payload"]["messages"][0]["content"][0]["image_url"]["url"]
        except (KeyError, IndexError, TypeError):
            url = None
        if not isinstance(url, str) or url == placeholder:
            raise UpstreamError(f"The media service did not resolve {media}.", code="media_service_error")
        return url


def _with_urls(message: dict[str, Any], urls: Mapping[str, str]) -> dict[str, Any]:
    if not isinstance(message.get("content"), list):
        return message
    parts = []
    for part in message["content"]:
        found = media_id(part["image_url"]["url"]) if part.get("type") == "image_url" else None
        parts.append({**part, "image_url": {**part["image_url"], "url": urls[found]}} if found else part)
    return {**message, "content": parts}
