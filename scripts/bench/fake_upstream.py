"""A fake OpenAI-compatible (vLLM-flavoured) upstream that costs microseconds per request.

    .venv/bin/python scripts/bench/fake_upstream.py --port 8001 [--workers 1] [--chunks 20]
    VLLM_BASE_URL=http://127.0.0.1:8001/v1 .venv/bin/llm-api serve      # model vllm/bench-model

Why not scripts/fake_upstream.py: that one is the test fake, built on aiohttp, faithful to vLLM's
and OpenAI's validation and errors, and so costs a few hundred microseconds a request. A benchmark
upstream must never be the bottleneck, so this one speaks just enough HTTP/1.1 on a raw asyncio
protocol and answers with bodies serialised once at start-up:

* ``GET /v1/models``: one model (``--model``, default ``bench-model``), as vLLM lists it;
* ``POST /v1/chat/completions``: a ``chat.completion`` with a fixed text, or with ``"stream": true``
  a role chunk, ``--chunks`` content chunks, a finish chunk, a usage chunk when
  ``stream_options.include_usage`` is true, and ``data: [DONE]``, each SSE event in its own HTTP chunk.
  A request whose ``max_tokens`` (or ``max_completion_tokens``) is below ``--chunks`` gets that many
  content chunks (words) instead, as a model stops there: one fake serves answers of several lengths;
* anything else: 404.

Keep-alive is the default (``Connection: close`` is honoured). ``--chunk-interval`` spaces the
stream's events (a model generating tokens); the default 0 sends them all at once. ``--workers N``
forks N processes that each bind the port with SO_REUSEPORT (the kernel spreads connections
between them), for when one core is not enough.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import time

CREATED = int(time.time())


# --- canned bodies ---------------------------------------------------------------------------------------------


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _response(status: str, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return (
        b"HTTP/1.1 "
        + status.encode()
        + b"\r\nContent-Type: "
        + content_type
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def _chunk(event: dict | str) -> bytes:
    """One SSE event as one HTTP/1.1 chunk."""
    payload = b"data: " + (event.encode() if isinstance(event, str) else _json(event)) + b"\n\n"
    return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"


class Answer:
    """The bytes of one answer of ``count`` content chunks: plain, and the events of its stream."""

    def __init__(self, model: str, count: int) -> None:
        words = [f"word{i} " for i in range(count)]
        usage = {"prompt_tokens": 12, "total_tokens": 12 + count, "completion_tokens": count}
        self.completion = _response(
            "200 OK",
            _json(
                {
                    "id": "chatcmpl-bench",
                    "object": "chat.completion",
                    "created": CREATED,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {
                                "role": "assistant",
                                "content": "".join(words),
                                "refusal": None,
                                "tool_calls": [],
                                "reasoning_content": None,
                            },
                            "logprobs": None,
                            "finish_reason": "stop",
                            "stop_reason": None,
                        }
                    ],
                    "usage": usage,
                    "prompt_logprobs": None,
                }
            ),
        )
        head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": CREATED, "model": model}

        def delta(content: str, finish: str | None = None) -> dict:
            choice = {"index": 0, "delta": {"content": content}, "logprobs": None, "finish_reason": finish}
            return {**head, "choices": [choice]}

        role = {
            **head,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}],
        }
        self.stream_events = [_chunk(role), *(_chunk(delta(w)) for w in words), _chunk(delta("", "stop"))]
        self.usage_event = _chunk({**head, "choices": [], "usage": usage})


class Canned:
    """Every byte this server sends, built once (an answer's the first time its length is asked for)."""

    def __init__(self, model: str, chunks: int) -> None:
        self.model = model
        self.chunks = chunks
        self.models = _response(
            "200 OK",
            _json(
                {
                    "object": "list",
                    "data": [
                        {
                            "id": model,
                            "object": "model",
                            "created": CREATED,
                            "owned_by": "vllm",
                            "root": model,
                            "parent": None,
                            "max_model_len": 32768,
                            "permission": [],
                        }
                    ],
                }
            ),
        )
        # The stream's framing: response head, and the final zero-length chunk after [DONE].
        self.stream_head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        self.stream_tail = _chunk("[DONE]") + b"0\r\n\r\n"
        self.not_found = _response(
            "404 Not Found", _json({"error": {"message": "not found", "type": "NotFoundError", "code": 404}})
        )
        self.bad_request = _response(
            "400 Bad Request", _json({"error": {"message": "invalid JSON body", "type": "BadRequestError", "code": 400}})
        )
        self._answers: dict[int, Answer] = {}

    def answer(self, request: dict) -> Answer:
        """The answer to ``request``: ``--chunks`` content chunks, fewer when its ``max_tokens`` (or
        ``max_completion_tokens``) is smaller, as a model stops there: how one fake serves streams of
        several lengths (scripts/bench/chunks.py)."""
        limit = request.get("max_completion_tokens") or request.get("max_tokens")
        count = min(limit, self.chunks) if isinstance(limit, int) and limit > 0 else self.chunks
        if count not in self._answers:
            self._answers[count] = Answer(self.model, count)
        return self._answers[count]


# --- the protocol ----------------------------------------------------------------------------------------------

MAX_HEAD = 64 * 1024


class Upstream(asyncio.Protocol):
    """One client connection: parse requests as they come (pipelining included), answer each from Canned."""

    def __init__(self, canned: Canned, interval: float) -> None:
        self.canned = canned
        self.interval = interval
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None:
            request = self._next_request()
            if request is None:
                if len(self.buffer) > MAX_HEAD and self.buffer.find(b"\r\n\r\n") < 0:
                    self.transport.close()
                return
            self._answer(*request)

    def _next_request(self) -> tuple[bytes, bytes, bytes, bool] | None:
        """(method, path, body, close) of the first complete request in the buffer, consumed; None if incomplete."""
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(buffer[:end])
        line, _, headers = head.partition(b"\r\n")
        method, _, rest = line.partition(b" ")
        path = rest.split(b" ", 1)[0]
        headers = headers.lower()
        start = end + 4
        if b"transfer-encoding: chunked" in headers:
            parsed = _dechunk(buffer, start)
            if parsed is None:
                return None
            body, consumed = parsed
        else:
            length = _content_length(headers)
            if len(buffer) < start + length:
                return None
            body, consumed = bytes(buffer[start : start + length]), start + length
        del buffer[:consumed]
        return method, path, body, b"connection: close" in headers

    def _answer(self, method: bytes, path: bytes, body: bytes, close: bool) -> None:
        canned, transport = self.canned, self.transport
        assert transport is not None
        path = path.split(b"?", 1)[0]
        if method == b"POST" and path == b"/v1/chat/completions":
            try:
                request = json.loads(body)
                stream = request.get("stream") is True
            except (ValueError, AttributeError):
                transport.write(canned.bad_request)
            else:
                answer = canned.answer(request)
                if stream:
                    options = request.get("stream_options")
                    usage = isinstance(options, dict) and options.get("include_usage") is True
                    self._stream(answer, usage, close)
                    return
                transport.write(answer.completion)
        elif method == b"GET" and path == b"/v1/models":
            transport.write(canned.models)
        else:
            transport.write(canned.not_found)
        if close:
            transport.close()

    def _stream(self, answer: Answer, usage: bool, close: bool) -> None:
        canned, transport = self.canned, self.transport
        assert transport is not None
        events = [*answer.stream_events, answer.usage_event] if usage else list(answer.stream_events)
        if self.interval <= 0:  # one write: the cheapest way to send the whole stream
            transport.write(canned.stream_head + b"".join(events) + canned.stream_tail)
            if close:
                transport.close()
            return
        transport.write(canned.stream_head + events[0])
        asyncio.get_running_loop().call_later(self.interval, self._paced, transport, events, 1, close)

    def _paced(self, transport: asyncio.Transport, events: list[bytes], index: int, close: bool) -> None:
        if transport.is_closing():
            return
        if index < len(events):
            transport.write(events[index])
            asyncio.get_running_loop().call_later(self.interval, self._paced, transport, events, index + 1, close)
            return
        transport.write(self.canned.stream_tail)
        if close:
            transport.close()


def _content_length(headers: bytes) -> int:
    at = headers.find(b"content-length:")
    if at < 0:
        return 0
    end = headers.find(b"\r\n", at)
    return int(headers[at + 15 : end if end >= 0 else len(headers)])


def _dechunk(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """A chunked request body (rare: clients send Content-Length) and where it ends; None if incomplete."""
    body, at = bytearray(), start
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None
        size = int(bytes(buffer[at:line_end]).split(b";", 1)[0], 16)
        if size == 0:
            trailer_end = buffer.find(b"\r\n\r\n", line_end)
            return (bytes(body), trailer_end + 4) if trailer_end >= 0 else None
        if len(buffer) < line_end + 2 + size + 2:
            return None
        body += buffer[line_end + 2 : line_end + 2 + size]
        at = line_end + 2 + size + 2


# --- serving ---------------------------------------------------------------------------------------------------


def _listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # several workers on one port
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def _serve(host: str, port: int, canned: Canned, interval: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Upstream(canned, interval), sock=_listening_socket(host, port))
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def _run_worker(args: argparse.Namespace) -> None:
    asyncio.run(_serve(args.host, args.port, Canned(args.model, args.chunks), args.chunk_interval))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--model", default="bench-model")
    parser.add_argument("--chunks", type=int, default=20, help="content chunks of an answer (at most: see max_tokens above)")
    parser.add_argument("--chunk-interval", type=float, default=0.0, help="seconds between streamed events (0: all at once)")
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the port with SO_REUSEPORT")
    args = parser.parse_args()
    _listening_socket(args.host, args.port).close()  # fail here, once, if the port is taken
    print(f"fake upstream listening on http://{args.host}:{args.port}/v1 ({args.workers} worker(s))", flush=True)
    if args.workers <= 1:
        _run_worker(args)
        return
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            _run_worker(args)
            os._exit(0)
        children.append(pid)
    # The parent only relays SIGTERM/SIGINT and waits, so that stopping it stops them all.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: [os.kill(pid, signal.SIGTERM) for pid in children])
    for pid in children:
        while True:
            try:
                os.waitpid(pid, 0)
                break
            except ChildProcessError:
                break
            except InterruptedError:
                continue


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
