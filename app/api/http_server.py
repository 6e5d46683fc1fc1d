"""The HTTP server's protocol: uvicorn's httptools parser with bounded request heads.

httptools (llhttp) sets no limit of its own: a 30 MB header was accepted, a few
unterminated 50 MB ones cost hundreds of MB, and connections sending a header byte
per second stayed open indefinitely. This protocol counts the bytes of each request
head (request line and headers) as they arrive and answers 431 as soon as they pass
`MAX_HEADER_BYTES`; a head not complete within `HEADER_TIMEOUT` of its first byte
(for the first request: of the connection) is cut off with 408. Both close the
connection; bodies are unaffected (uploads have their own bound). It keeps
httptools, so parsing stays in C: the check is a comparison per read.

It also gives the app `ABORT_EXTENSION` (see `app.api.delivery`): drop the connection
at once, which a stalled client's socket needs (a plain close would wait for it to
read what is buffered).

`server_options(settings)` is what `python -m app` and `WORKERS=N` hand uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from app.api.delivery import ABORT_EXTENSION
from app.api.websocket import uvicorn_ws_options
from app.config import Settings
from app.errors import error_envelope

log = logging.getLogger(__name__)

_ABORT_WAIT = 1.0


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        max_header_bytes: int = 32 * 1024,
        header_timeout: float = 10.0,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.max_header_bytes = max_header_bytes
        self.header_timeout = header_timeout
        self._in_head = True
        """The next bytes belong to a request head (none has completed since the last body)."""
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._lost: asyncio.Future[None] | None = None

    # --- connection ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._lost = self.loop.create_future()
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if not self._in_head:
            super().data_received(data)
            return
        room = self.max_header_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            super().data_received(data)
            return
        # Feed no more than the limit allows; what follows a head completed within it
        # (a body) is fed as usual.
        self._head_bytes += room
        super().data_received(data[:room])
        if self._refused or self.transport.is_closing():
            return
        if self._in_head:
            self._refuse(431, f"Request headers exceed {self.max_header_bytes} bytes "
                              "(MAX_HEADER_BYTES).", "request_header_fields_too_large")  # fmt: skip
            return
        protocol = self.transport.get_protocol()
        rest = data[room:]
        if protocol is self:
            super().data_received(rest)
        else:  # upgraded to a WebSocket by that head
            protocol.data_received(rest)

    # --- parser callbacks ----------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {ABORT_EXTENSION: self._abort}  # type: ignore[dict-item]
        if self._head_timer is None:
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    # --- limits --------------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._in_head or self._refused or self.transport.is_closing():
            return
        if self._head_bytes == 0:  # an idle connection: nothing to answer
            self._refused = True
            self.transport.close()
            return
        self._refuse(408, f"Request headers not received within {self.header_timeout:g} s "
                          "(HEADER_TIMEOUT).", "request_timeout")  # fmt: skip

    def _refuse(self, status: int, message: str, code: str) -> None:
        self._refused = True
        self._cancel_head_timer()
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "unknown client"
        log.info("refused a request head from %s: %s", client, message)
        body = json.dumps(error_envelope(message, "invalid_request_error", code=code)).encode()
        head = [
            STATUS_LINE[status],
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()

    async def _abort(self) -> None:
        self.transport.abort()
        if self._lost is not None:
            # uvicorn marks the request disconnected in connection_lost: the app's return
            # after an abort is then no incomplete response to complain about.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._lost), _ABORT_WAIT)


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn options every way of serving the gateway shares (picklable, for workers):
    the bounded HTTP protocol and the WebSocket settings."""
    protocol = functools.partial(
        BoundedHttpToolsProtocol,
        max_header_bytes=settings.max_header_bytes,
        header_timeout=settings.header_timeout,
    )
    return {"http": protocol, **uvicorn_ws_options(settings)}
