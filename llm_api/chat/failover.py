"""Calling the candidates for a model in order, until one answers.

Only a provider that could not be reached, or answered 502/503, before its answer began
(``ProviderUnavailable``) is worth another try: the next candidate at once, and when every one of
them is unavailable the round is repeated, up to UPSTREAM_RETRIES times, after a growing pause.
Anything else (a 400, a 429, a timeout after the request was sent) is the answer.

Every failed call is counted in the metrics (``llm_api_upstream_errors_total``), the ones a later
candidate or round made up for included.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from llm_api.errors import ProviderUnavailable, UpstreamError
from llm_api.observability.metrics import Metrics
from llm_api.providers.registry import Route
from llm_api.providers.service import Providers

log = logging.getLogger(__name__)
T = TypeVar("T")
_FIRST_PAUSE = 0.25
_LONGEST_PAUSE = 2.0


class Failover:
    def __init__(self, providers: Providers, retries: int, metrics: Metrics) -> None:
        self._providers = providers
        self._retries = retries
        self._metrics = metrics

    async def complete(self, routes: list[Route], body: dict[str, Any]) -> tuple[Route, dict[str, Any]]:
        return await self._first_answer(routes, lambda route: self._providers.adapter(route.provider).complete(route, body))

    async def open_stream(
        self, routes: list[Route], body: dict[str, Any]
    ) -> tuple[Route, tuple[list[dict[str, Any]], AsyncIterator[list[dict[str, Any]]]]]:
        """The route that answered, its first batch of chunks, and the rest of its batches (to be closed by
        the caller)."""

        async def first_chunk(route: Route) -> tuple[list[dict[str, Any]], AsyncIterator[list[dict[str, Any]]]]:
            chunks = self._providers.adapter(route.provider).stream(route, body)
            try:
                return await anext(chunks), chunks
            except StopAsyncIteration:
                raise UpstreamError(
                    f"Provider {route.provider.name} ended its answer before it began.", code="incomplete_upstream_response"
                ) from None
            except BaseException:
                await chunks.aclose()
                raise

        return await self._first_answer(routes, first_chunk)

    async def _first_answer(self, routes: list[Route], call: Callable[[Route], Awaitable[T]]) -> tuple[Route, T]:
        unavailable: ProviderUnavailable | None = None
        for attempt in range(self._retries + 1):
            if attempt:
                pause = min(_LONGEST_PAUSE, _FIRST_PAUSE * 2 ** (attempt - 1))
                await asyncio.sleep(pause * random.uniform(0.8, 1.2))  # jitter: workers do not retry in step
            for route in routes:
                try:
                    return route, await call(route)
                except ProviderUnavailable as error:
                    self._metrics.upstream_failed(route.provider.name, error)
                    log.warning("%s (attempt %d)", error.message, attempt + 1)
                    unavailable = error
                except Exception as error:  # the answer; counted when it is the provider's failure
                    self._metrics.upstream_failed(route.provider.name, error)
                    raise
        assert unavailable is not None  # routes is never empty
        raise unavailable
