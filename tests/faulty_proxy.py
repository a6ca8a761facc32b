"""A TCP proxy in the test's event loop that can fail like a network or a server does.

pass       forward both ways
refuse     close every connection and stop listening (the server is down)
blackhole  accept, but move no bytes either way (packets dropped); healing resumes
           the held connections, as TCP's retransmissions would
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

Mode = Literal["pass", "refuse", "blackhole"]
CHUNK = 65536


class FaultyProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.mode: Mode = "pass"
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._accept, sock=sock)

    async def set(self, mode: Mode) -> None:
        """Switch to `mode`; from refuse, listen again on the same port."""
        self.mode = mode
        if mode == "blackhole":
            self._flowing.clear()
            return
        self._flowing.set()
        if mode == "refuse":
            await self._stop_listening()
            for writer in list(self._writers):
                writer.transport.abort()
        elif self._server is None:
            await self.start()

    async def close(self) -> None:
        await self._stop_listening()
        self._flowing.set()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await self._flowing.wait()  # a black hole leaves the connection unanswered
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(CHUNK):
                await self._flowing.wait()
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            sink.transport.abort()
            self._writers.discard(sink)


@asynccontextmanager
async def proxy_to(url_host: str, url_port: int) -> AsyncIterator[FaultyProxy]:
    proxy = FaultyProxy(url_host, url_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        with contextlib.suppress(Exception):
            await proxy.close()
