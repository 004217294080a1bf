"""TcpProxy: a TCP hop between Slotwise and its database that fails the ways networks and servers do.

`refuse()` stops listening and cuts every open connection (a database that is down: connects are refused);
`stall()` keeps accepting but forwards nothing in either direction (a database, firewall or load balancer that
accepts and never answers); `restore()` goes back to passing bytes through on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.stalled = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._released = asyncio.Event()
        self._released.set()

    @classmethod
    def in_front_of(cls, database_url: str) -> TcpProxy:
        """A proxy for the host and port of a `scheme://user@host:port/name` database URL."""
        host, _, port = database_url.split("@", 1)[1].split("/", 1)[0].partition(":")
        return cls(host, int(port or 5432))

    def url_for(self, database_url: str) -> str:
        """The same database URL, reached through this proxy."""
        prefix, rest = database_url.split("@", 1)
        return f"{prefix}@127.0.0.1:{self.port}/{rest.split('/', 1)[1]}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def refuse(self) -> None:
        """Stop listening (new connects get ECONNREFUSED) and cut every connection already open."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def stall(self) -> None:
        """Accept connections, forward nothing; open connections freeze too."""
        self.stalled = True
        self._released.clear()

    async def restore(self) -> None:
        """Pass bytes again, listening on the same port; stalled connections are cut (their peers gave up)."""
        if self.stalled:
            self.stalled = False
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()
            self._released.set()
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        await self.refuse()
        self._released.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            if self.stalled:
                await self._released.wait()
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                return
            self._writers.add(up_writer)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._released.wait()
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()
