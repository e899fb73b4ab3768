"""The server-sent-events side of a streamed answer: one writer, keep-alives, and noticing that the
client has gone.

Events are ``data: <json>`` lines separated by a blank line (``\\n`` line ends, as OpenAI sends
them); ``: ping`` comment lines keep proxies from closing a silent stream; ``data: [DONE]`` ends it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from aiohttp_sse import EventSourceResponse

# How often to look whether the client is still connected. aiohttp does not cancel a handler when
# its client disconnects, and a stream waiting on a slow provider would not notice until its next
# write (up to a keep-alive interval later); the provider would be kept generating for nobody.
_DISCONNECT_POLL = 0.1


class EventStream:
    def __init__(self, request: web.Request, *, headers: Mapping[str, str], keepalive: float) -> None:
        self._request = request
        # POST, not EventSource's GET: OpenAI's streaming endpoints are POSTs.
        self._response = EventSourceResponse(headers=headers, sep="\n", ping_interval=keepalive, allow_all_methods=True)

    @property
    def response(self) -> web.StreamResponse:
        return self._response

    async def open(self) -> None:
        if self.client_gone:  # nothing to open (and aiohttp-sse's prepare asserts a transport)
            raise asyncio.CancelledError
        await self._response.prepare(self._request)

    async def send(self, payload: Mapping[str, Any]) -> None:
        await self._response.send(json.dumps(payload, separators=(",", ":"), ensure_ascii=False))

    async def close(self) -> None:
        """Send ``[DONE]`` and end the response."""
        await self._response.send("[DONE]")
        await self.stop()
        await self._response.write_eof()

    async def stop(self) -> None:
        """Stop the keep-alives (the client is gone, or the stream is over)."""
        self._response.stop_streaming()
        await self._response.wait()

    @property
    def client_gone(self) -> bool:
        transport = self._request.transport
        return transport is None or transport.is_closing()

    async def cancel_when_client_leaves(self, task: asyncio.Task) -> None:
        """Cancel ``task`` as soon as the client disconnects; runs until cancelled itself."""
        while not self.client_gone:
            await asyncio.sleep(_DISCONNECT_POLL)
        task.cancel()
