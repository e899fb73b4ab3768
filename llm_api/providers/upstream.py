"""Calling providers over HTTP, and turning whatever goes wrong into the answer we document.

- the provider cannot be reached, or answers 502/503 (or Anthropic's 529 "overloaded"), before its
  answer began: ProviderUnavailable
  (the caller retries with backoff and then fails over to the next provider);
- its 400/404/413 (and 409/415/422 as 400): the same status with the provider's own message;
- its 429: a 429 carrying its Retry-After;
- its 401/403 (our key for it is refused) and anything else: a 502 naming the provider;
- no answer in time: a 504.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from llm_api.config import Settings
from llm_api.errors import (
    ApiError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    ProviderUnavailable,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from llm_api.providers.registry import Provider


class UpstreamCalls:
    """The HTTP side of every adapter: one pooled session, the configured timeouts, the error mapping."""

    def __init__(self, session: aiohttp.ClientSession, settings: Settings) -> None:
        self._session = session
        connect = settings.upstream_connect_timeout
        self._plain = aiohttp.ClientTimeout(total=settings.upstream_timeout, sock_connect=connect)
        self._stream = aiohttp.ClientTimeout(total=settings.stream_timeout, sock_connect=connect)

    @asynccontextmanager
    async def open(self, provider: Provider, method: str, url: str, *, stream: bool, headers: dict, json_body: Any = None):
        """The provider's response, once its status says success; raises the mapped error otherwise."""
        try:
            async with self._session.request(
                method,
                url,
                json=json_body,
                headers=headers,
                timeout=self._stream if stream else self._plain,
            ) as response:
                if response.status >= 400:
                    raise await _refusal(provider, response)
                yield response
        except (
            aiohttp.ClientConnectorError,
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientOSError,
            aiohttp.ConnectionTimeoutError,
        ) as error:
            raise ProviderUnavailable(f"Provider {provider.name} cannot be reached: {_reason(error)}.") from None
        except TimeoutError:
            raise UpstreamTimeout(f"Provider {provider.name} did not answer in time.") from None

    async def json(self, provider: Provider, method: str, url: str, *, headers: dict, json_body: Any = None) -> Any:
        try:
            async with self.open(provider, method, url, stream=False, headers=headers, json_body=json_body) as response:
                body = await response.read()
        except aiohttp.ClientPayloadError as error:
            raise UpstreamError(f"Provider {provider.name} broke off its answer: {_reason(error)}.") from None
        try:
            return json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: nested too deep to parse; was a 500, not a 502
            raise UpstreamError(
                f"Provider {provider.name} answered something that is not JSON.", code="invalid_upstream_response"
            ) from None


async def _refusal(provider: Provider, response: aiohttp.ClientResponse) -> ApiError:
    """The error for the provider's refusal, carrying its status as ``upstream_status``."""
    message = upstream_message(await response.read())
    if provider.api_key:
        # Some servers repeat the key they were sent in their refusal (LiteLLM's proxy does): it would reach
        # the client's error message and the logs.
        message = message.replace(provider.api_key, "[redacted]")
    status = response.status
    said = f"Provider {provider.name} answered {status}: {message}"
    if status in (502, 503, 529):
        return ProviderUnavailable(said, upstream_status=status)
    if status == 429:
        retry_after = response.headers.get("Retry-After") or response.headers.get("retry-after") or "1"
        return RateLimited(said, code="upstream_rate_limited", headers={"Retry-After": retry_after}, upstream_status=status)
    if status == 404:
        return NotFound(said, code="upstream_not_found", upstream_status=status)
    if status == 413:
        return PayloadTooLarge(said, code="upstream_request_too_large", upstream_status=status)
    if status in (401, 403):
        return UpstreamError(
            f"Provider {provider.name} refused our credentials ({status}): {message}",
            code="upstream_auth_failed",
            upstream_status=status,
        )
    if 400 <= status < 500:
        return InvalidRequest(said, code="upstream_invalid_request", upstream_status=status)
    return UpstreamError(said, upstream_status=status)


def upstream_message(body: bytes) -> str:
    """The human part of a provider's error body, whichever convention it follows."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested too deep to parse; shown as text, not a 500
        text = body.decode("utf-8", errors="replace").strip()
        return (text[:300] + "...") if len(text) > 300 else (text or "(no message)")
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):  # OpenAI, Anthropic
            return str(error["message"])
        for key in ("message", "detail", "error"):  # vLLM, FastAPI, plain
            if isinstance(data.get(key), str):
                return data[key]
    return json.dumps(data)[:300]


def _reason(error: BaseException) -> str:
    return str(error).strip() or type(error).__name__
