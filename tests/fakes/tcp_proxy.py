"""A small asyncio TCP proxy for fault injection at the wire level.

The code under test connects to the proxy instead of the real server, so a test can cut the network
without patching anything::

    proxy = TcpProxy("127.0.0.1", 5432)
    port = await proxy.start()      # listens on 127.0.0.1:<port>, forwards to the target
    await proxy.cut()               # every open connection dies; new ones are accepted and closed at once
    await proxy.restore()           # new connections are forwarded again
    await proxy.stop()
"""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self._server: asyncio.Server | None = None
        self.port: int | None = None  # the listening port, once started
        self._cut = False
        self._writers: set[asyncio.StreamWriter] = set()  # both ends of every forwarded connection
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> int:
        """Listen on a free loopback port; return it."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
        await self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def cut(self) -> None:
        """Abort every open connection in both directions and refuse new ones until ``restore()``."""
        self._cut = True
        for writer in list(self._writers):
            writer.transport.abort()  # no graceful FIN: the peers see a reset connection
        self._writers.clear()
        await asyncio.sleep(0)  # let the pipes notice

    async def restore(self) -> None:
        """Forward new connections again (connections cut earlier stay dead)."""
        self._cut = False

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self._cut:
            client_writer.transport.abort()
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            client_writer.transport.abort()
            return
        if self._cut:  # cut while we were connecting upstream
            client_writer.transport.abort()
            server_writer.transport.abort()
            return
        self._writers.update((client_writer, server_writer))
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await asyncio.gather(self._pipe(client_reader, server_writer), self._pipe(server_reader, client_writer))
        finally:
            self._tasks.discard(task)
            self._writers.difference_update((client_writer, server_writer))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy bytes until either side goes away, then close the other side too."""
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()
