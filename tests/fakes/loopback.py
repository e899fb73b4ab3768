"""What every fake server shares: listening on loopback, recording the requests it received, and running
one for the length of a block."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from aiohttp import web

Fake = TypeVar("Fake")


async def listen(app: web.Application, port: int = 0, **runner_options: Any) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on 127.0.0.1 (a free port by default): its runner and base URL."""
    runner = web.AppRunner(app, access_log=None, **runner_options)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def recorded(request: web.Request) -> dict[str, Any]:
    """The request as the fakes record it: method, path, headers (lower-cased names, repeats joined) and
    the body parsed as JSON (None when absent or not JSON)."""
    raw = await request.read()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return {"method": request.method, "path": request.path, "headers": headers, "json": parsed}


@asynccontextmanager
async def running(fake: Fake) -> AsyncIterator[Fake]:
    """``fake`` (any fake with ``start()`` and ``stop()``), listening for the duration of the block."""
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
