"""Reading a provider's server-sent events (both the OpenAI and the Anthropic conventions)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp

from llm_api.errors import UpstreamError, UpstreamTimeout
from llm_api.providers.registry import Provider


async def events(provider: Provider, response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str | None, str]]:
    """(event name, data) for each event; comments (keep-alives) are skipped."""
    name: str | None = None
    data: list[str] = []
    try:
        async for raw in response.content:
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if not line:
                if data:
                    yield name, "\n".join(data)
                name, data = None, []
            elif not line.startswith(":"):
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "data":
                    data.append(value)
                elif field == "event":
                    name = value
    except asyncio.TimeoutError:
        raise UpstreamTimeout(f"Provider {provider.name} did not complete its answer in time.") from None
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as error:
        raise UpstreamError(f"Provider {provider.name} broke off its answer: {str(error) or type(error).__name__}.") from None
    if data:
        yield name, "\n".join(data)
