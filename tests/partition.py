"""A network partition between the daemon and a server: a TCP relay that can stop passing bytes both ways while every
connection stays open (no reset, no answer), which is what a node cut off by the network looks like to a client."""

from __future__ import annotations

import asyncio
import contextlib


class Partition:
    """A TCP relay to `port` that can stop relaying (freeze) and start again (thaw), holding every connection."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.port = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            t = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read(65536):
                await self._flowing.wait()  # frozen: the bytes wait here, the connection stays open
                dst.write(data)
                await dst.drain()
        dst.close()

    async def stop(self) -> None:
        self.thaw()
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
