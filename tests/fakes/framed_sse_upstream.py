"""An OpenAI-compatible provider that streams one answer cut into the byte pieces a test chooses.

Real servers frame server-sent events in more ways than ``data: {...}\\n\\n`` (CR LF line ends,
comments, ``event:`` lines, data over several lines, no space after the colon) and TCP splits them
anywhere. This fake sends exactly the pieces it is given, each in its own write with a pause between,
so that each arrives in its own read on the other side.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from tests.fakes.loopback import listen

MODEL = "framed-model"


class FramedSSEUpstream:
    def __init__(self, pieces: list[bytes], pause: float = 0.01) -> None:
        self.pieces = pieces
        self.pause = pause
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner, self.base_url = await listen(app)
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "test"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for piece in self.pieces:
            await response.write(piece)
            await asyncio.sleep(self.pause)
        await response.write_eof()
        return response
