"""Reading a provider's server-sent events (both the OpenAI and the Anthropic conventions).

The stream is split as bytes, read by read: what arrived in one read becomes one batch of events,
so that everything downstream (parsing, relaying, the write to the client) is paid once per read
rather than once per line. Nearly every event providers send is one ``data: <json>`` line; those
are cut out of the buffer without decoding. Anything else (``event:`` lines, several ``data:``
lines, comments, ``\\r\\n`` or ``\\r`` line ends, ``data:`` with no space) goes through the full
parser of the SSE specification.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp

from llm_api.errors import UpstreamError, UpstreamTimeout
from llm_api.providers.registry import Provider

#: (event name or None, data) of one event; data as the bytes that arrived (UTF-8, as the spec says).
Event = tuple[str | None, bytes]


async def event_batches(provider: Provider, response: aiohttp.ClientResponse) -> AsyncIterator[list[Event]]:
    """The events of each read, in order; reads that complete no event yield nothing."""
    splitter = EventSplitter()
    try:
        async for data in response.content.iter_any():
            events = splitter.feed(data)
            if events:
                yield events
    except TimeoutError:
        raise UpstreamTimeout(f"Provider {provider.name} did not complete its answer in time.") from None
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as error:
        raise UpstreamError(f"Provider {provider.name} broke off its answer: {str(error) or type(error).__name__}.") from None
    last = splitter.end()
    if last:
        yield last


class EventSplitter:
    """Bytes in, complete events out; keeps the incomplete tail for the next read."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[Event]:
        buffer = self._pending + data if self._pending else data
        if b"\r" in buffer:
            # CR LF and lone CR end lines too. A CR at the very end may be the first half of a CR LF
            # that the next read completes: it waits.
            held = buffer.endswith(b"\r")
            buffer = (buffer[:-1] if held else buffer).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if held:
                buffer += b"\r"
        end = buffer.rfind(b"\n\n")
        if end < 0:
            self._pending = buffer
            return []
        self._pending = buffer[end + 2 :]
        events: list[Event] = []
        for block in buffer[:end].split(b"\n\n"):
            if block.startswith(b"data: ") and b"\n" not in block:  # the common case: one data line
                events.append((None, block[6:]))
            else:
                event = _parsed(block)
                if event is not None:
                    events.append(event)
        return events

    def end(self) -> list[Event]:
        """The events of a stream that stopped without a blank line after its last event."""
        rest, self._pending = self._pending.rstrip(b"\r"), b""
        event = _parsed(rest.replace(b"\r\n", b"\n").replace(b"\r", b"\n")) if rest else None
        return [event] if event is not None else []


def _parsed(block: bytes) -> Event | None:
    """One event from its lines (without the blank line ending it); None when it carries no data."""
    name: str | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):  # blank (a stray separator) or a comment (keep-alive)
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value.decode("utf-8", errors="replace")
    if not data:
        return None
    return name, b"\n".join(data)
