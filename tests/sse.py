"""Reading the server-sent events of a streamed chat completion, as tests do."""

from __future__ import annotations

import json

import aiohttp


async def data_events(response: aiohttp.ClientResponse) -> list:
    """The ``data:`` payloads of an event stream, in order: parsed JSON, and ``[DONE]`` as the string."""
    events = []
    async for line in response.content:
        text = line.decode().rstrip("\n")
        if text.startswith("data: "):
            data = text[len("data: ") :]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events
