"""The one writer of server-sent events: a use case's stream of chunks turned into a streamed response.

Events are ``data: <json>`` lines separated by a blank line (``\\n`` line ends, as OpenAI sends
them); ``: ping`` comment lines keep proxies from closing a silent stream (aiohttp-sse's keep-alive
task); ``data: [DONE]`` ends the stream.

Cost matters here: a streamed answer is hundreds of chunks. The chunks of one batch (what arrived in
one read from the provider) are serialised with orjson and go out in one write, so the transport, the
chunked encoding and the flow-control check are paid once per batch rather than once per chunk.

A client that leaves is noticed by a timer polling the connection (aiohttp does not cancel a handler
whose client disconnected, and a stream waiting on a slow provider would otherwise not notice until
its next write, keeping the provider generating for nobody): the handler's task is cancelled, the use
case stores what arrived, and the request ends as 499. The same timer aborts a connection whose
client has stopped reading for longer than ``SEND_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web
from aiohttp_sse import EventSourceResponse

from llm_api import json_codec
from llm_api.chat.relay import StreamEnd

# How often to look whether the client is still connected (and still reading).
_POLL_INTERVAL = 0.1
#: A write the client has not let through (its receive window full) for this long ends the stream.
SEND_TIMEOUT = EventSourceResponse.DEFAULT_SEND_TIMEOUT
_DONE = b"data: [DONE]\n\n"

Stream = AsyncIterator[list[dict[str, Any]] | StreamEnd]


async def stream_response(
    request: web.Request, events: Stream, *, headers: Mapping[str, str], keepalive: float
) -> web.StreamResponse:
    """Relay ``events``; a failure raised before the first batch is an ordinary error response.

    From the first moment (the wait for the first batch included), a client that leaves cancels the
    work; the request then ends with ``asyncio.CancelledError``, as aiohttp's own for a client that
    left (logged as 499).
    """
    watch = _ClientWatch(request)
    try:
        first = await anext(events)
        # POST, not EventSource's GET: OpenAI's streaming endpoints are POSTs.
        response = EventSourceResponse(headers=headers, sep="\n", ping_interval=keepalive, allow_all_methods=True)
        if watch.client_left:  # nothing to open (and aiohttp-sse's prepare asserts a transport)
            raise asyncio.CancelledError
        await response.prepare(request)
        try:
            await _relay(response, watch, first, events)
        except (asyncio.CancelledError, ConnectionResetError):
            response.stop_streaming()  # the keep-alives: the client is gone
            await events.aclose()  # stores what arrived, marked incomplete
            raise asyncio.CancelledError from None
        return response
    finally:
        watch.stop()
        await events.aclose()  # no-op when the stream has ended


async def _relay(
    response: EventSourceResponse, watch: _ClientWatch, item: list[dict[str, Any]] | StreamEnd, events: Stream
) -> None:
    while not isinstance(item, StreamEnd):
        await watch.write(response, _frames(item))
        item = await anext(events)
    tail = bytearray()
    if item.conversation_chunk is not None:
        tail += _frames([item.conversation_chunk])
    if item.error is not None:
        tail += _frames([item.error.envelope()])
    await watch.write(response, tail + _DONE)
    response.stop_streaming()
    await response.wait()  # the keep-alive task has stopped: nothing can come after the end
    await response.write_eof()


def _frames(payloads: list[dict[str, Any]]) -> bytearray:
    # Appended to one growing buffer rather than joined from a list: the list's hundreds of freshly
    # freed small objects beside one large allocation made glibc trim and re-grow its heap on every
    # batch, 2 µs a chunk (measured; see docs/performance.md).
    frames = bytearray()
    for payload in payloads:
        frames += b"data: "
        frames += json_codec.dumps(payload)
        frames += b"\n\n"
    return frames


class _ClientWatch:
    """Cancels the request's task when its client disconnects, or stops reading for ``SEND_TIMEOUT``."""

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self._task = asyncio.current_task()
        self._loop = asyncio.get_running_loop()
        self._writing_since: float | None = None  # when the write under way began
        self.client_left = False
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(_POLL_INTERVAL, self._look)

    async def write(self, response: web.StreamResponse, data: bytes) -> None:
        self._writing_since = self._loop.time()
        await response.write(data)  # waits only while the transport's buffer is full
        self._writing_since = None

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _look(self) -> None:
        transport = self._request.transport
        if transport is not None and not transport.is_closing():
            if self._writing_since is None or self._loop.time() - self._writing_since < SEND_TIMEOUT:
                self._timer = self._loop.call_later(_POLL_INTERVAL, self._look)
                return
            transport.abort()  # a stalled client: a graceful close would wait on it forever
        self._timer = None
        self.client_left = True
        if self._task is not None:
            self._task.cancel()
