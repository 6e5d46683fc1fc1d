"""A TCP front for a loopback server that resets, refuses or passes connections on command.

Connection-level faults cannot come from an ASGI app (it never sees the socket), so
this sits in front of one: each accepted connection takes the next queued action
(default "pass": bytes are relayed both ways), and `max_connections` resets every
connection beyond that many open at once, as a server with a full listen backlog
does. `refuse()` closes the listening socket (connections are refused) until
`resume()` reopens it on the same port.

    with VLLMServer() as backend, TcpFront(backend.port) as front:
        front.push("reset", "reset")         # the next two connections get an RST
        ... POST {front.url}/v1/completions ...
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections import deque
from typing import Literal, Self

Action = Literal["pass", "reset", "reset_after_request"]


class TcpFront:
    def __init__(self, target_port: int, *, max_connections: int | None = None) -> None:
        self.target_port = target_port
        self.max_connections = max_connections
        self.actions: deque[Action] = deque()
        self.accepted = 0
        self.resets = 0
        self.open = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def push(self, *actions: Action) -> None:
        self.actions.extend(actions)

    def start(self) -> Self:
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        self.refuse()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def refuse(self) -> None:
        """Close the listening socket: new connections are refused."""
        self._call(self._close())

    def resume(self) -> None:
        self._call(self._listen())

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._handle, sock=sock, backlog=128)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        try:
            action = self.actions.popleft() if self.actions else "pass"
            if self.max_connections is not None and self.open > self.max_connections:
                action = "reset"
            if action == "reset_after_request":
                with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                    await reader.readuntil(b"\r\n\r\n")
                action = "reset"
            if action == "reset":
                self.resets += 1
                _reset(writer)
                return
            await self._relay(reader, writer)
        finally:
            self.open -= 1

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            _reset(writer)
            return

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                with contextlib.suppress(OSError):
                    dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


def _reset(writer: asyncio.StreamWriter) -> None:
    # SO_LINGER with a zero timeout makes close() send an RST instead of a FIN.
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
