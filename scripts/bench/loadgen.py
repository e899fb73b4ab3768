"""A closed-loop HTTP/1.1 load generator that times the first SSE event of streamed answers.

    .venv/bin/python scripts/bench/loadgen.py --url http://127.0.0.1:8080/v1/chat/completions \
        --requests-file reqs.tsv --concurrency 16 --duration 10

wrk times whole responses only; a gateway's cost on a stream shows in its time to first chunk
(TTFC), so streamed cases use this instead. ``--concurrency`` connections each send a request, read
the whole answer, and send the next one (closed loop, keep-alive) until ``--duration`` is over;
answers that end after that are not counted (as wrk does). Requests come round-robin from
``--requests-file``: one per line, ``<bearer token or empty><TAB><JSON body>``, then
``<TAB><name>: <value>`` per extra header (wrk_chat.lua's format).

It is written on raw asyncio protocols and parses only the response framing (status line,
Content-Length or chunked encoding), so that it costs tens of microseconds per answer: run.py
checks that it is not the bottleneck by comparing the direct path's rate with the gateway's.
It prints one JSON object: counts, errors by kind, rate, and percentiles in milliseconds of the
latency (request written to last byte) and, for event streams, of the TTFC (request written to the
first ``data:`` line).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

clock = time.perf_counter


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.ttfcs: list[float] = []
        self.errors: dict[str, int] = {}

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class Connection(asyncio.Protocol):
    """One keep-alive connection: a request at a time; ``done`` resolves when its answer is complete."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.done: asyncio.Future | None = None
        self.closed = asyncio.get_running_loop().create_future()

    # -- one exchange ---------------------------------------------------------------------------------------------

    def send(self, request: bytes) -> asyncio.Future:
        self.buffer.clear()
        self.status = 0
        self.body_start = -1  # index of the body in the buffer, once the head is read
        self.length = -1  # Content-Length, or -1 for chunked
        self.chunk_at = 0  # where the next chunk-size line starts (chunked bodies)
        self.first_event = 0.0
        self.sse = False
        self.done = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.started = clock()
        self.transport.write(request)
        return self.done

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("connection lost"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.done is None or self.done.done():
            return  # nothing asked: ignore (a server would not send unasked)
        self.buffer += data
        if self.body_start < 0 and not self._read_head():
            return
        if self.sse and not self.first_event and self.buffer.find(b"data:", self.body_start) >= 0:
            self.first_event = clock()
        if self._complete():
            self.done.set_result(clock())

    def _read_head(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buffer[:end]).lower()
        self.status = int(head[9:12])
        self.sse = b"content-type: text/event-stream" in head
        at = head.find(b"content-length:")
        if at >= 0:
            line_end = head.find(b"\r\n", at)
            self.length = int(head[at + 15 : line_end if line_end >= 0 else len(head)])
        elif b"transfer-encoding: chunked" not in head:
            self.length = 0  # neither: an empty body (1xx/204/304 would be, and we never ask for others)
        self.body_start = self.chunk_at = end + 4
        return True

    def _complete(self) -> bool:
        """Is the answer whole? Walks the chunk-size lines received so far (no copy of the data)."""
        buffer = self.buffer
        if self.length >= 0:
            return len(buffer) - self.body_start >= self.length
        while True:
            line_end = buffer.find(b"\r\n", self.chunk_at)
            if line_end < 0:
                return False
            size = int(bytes(buffer[self.chunk_at : line_end]).split(b";", 1)[0], 16)
            if size == 0:
                return buffer.endswith(b"\r\n\r\n") and len(buffer) >= line_end + 4
            next_at = line_end + 2 + size + 2
            if len(buffer) < next_at:
                return False
            self.chunk_at = next_at

    def body(self) -> bytes:
        return bytes(self.buffer[self.body_start :])


async def _worker(host: str, port: int, requests: list[bytes], offset: int, deadline: float, stats: Stats) -> None:
    loop = asyncio.get_running_loop()
    conn: Connection | None = None
    index = offset
    while clock() < deadline:
        if conn is None or conn.transport is None:
            try:
                _, conn = await loop.create_connection(Connection, host, port)
            except OSError:
                stats.error("connect")
                await asyncio.sleep(0.01)
                continue
        request = requests[index % len(requests)]
        index += 1
        try:
            finished = await asyncio.wait_for(conn.send(request), timeout=max(deadline - clock(), 0) + 10)
        except (ConnectionError, TimeoutError) as error:
            stats.error("timeout" if isinstance(error, TimeoutError) else "read")
            if conn.transport is not None:
                conn.transport.abort()
            conn = None
            continue
        if finished > deadline:
            break  # ended after the measurement window: not counted
        _record(conn, finished, stats)
    if conn is not None and conn.transport is not None:
        conn.transport.close()


def _record(conn: Connection, finished: float, stats: Stats) -> None:
    if conn.status != 200:
        stats.error(f"status_{conn.status}")
        return
    if conn.sse:  # an event stream: it must end with [DONE] and carry no error event
        body = conn.body()
        if b"[DONE]" not in body[-64:]:
            stats.error("stream_unfinished")
            return
        if b'data: {"error"' in body:
            stats.error("stream_error_event")
            return
        stats.ttfcs.append(conn.first_event - conn.started)
    stats.latencies.append(finished - conn.started)


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


def _summary(stats: Stats, duration: float) -> dict:
    ok = len(stats.latencies)
    return {
        "requests": ok,
        "errors": stats.errors,
        "duration_s": duration,
        "rps": ok / duration,
        "latency_ms": {
            "p50": _percentile(stats.latencies, 0.50),
            "p90": _percentile(stats.latencies, 0.90),
            "p99": _percentile(stats.latencies, 0.99),
        },
        "ttfc_ms": {
            "p50": _percentile(stats.ttfcs, 0.50),
            "p90": _percentile(stats.ttfcs, 0.90),
            "p99": _percentile(stats.ttfcs, 0.99),
        }
        if stats.ttfcs
        else None,
    }


def _load_requests(path: str, host: str, port: int, target: str) -> list[bytes]:
    requests = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            token, body, *headers = line.rstrip("\n").split("\t")
            payload = body.encode()
            head = (
                f"POST {target} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n"
            )
            if token:
                head += f"Authorization: Bearer {token}\r\n"
            head += "".join(f"{header}\r\n" for header in headers)
            requests.append(head.encode() + b"\r\n" + payload)
    if not requests:
        raise SystemExit(f"{path}: no request")
    return requests


async def run(url: str, requests_file: str, concurrency: int, duration: float) -> dict:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = _load_requests(requests_file, host, port, parts.path or "/")
    stats = Stats()
    started = clock()
    deadline = started + duration
    await asyncio.gather(*(_worker(host, port, requests, i, deadline, stats) for i in range(concurrency)))
    return _summary(stats, duration)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--requests-file", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    result = asyncio.run(run(args.url, args.requests_file, args.concurrency, args.duration))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
