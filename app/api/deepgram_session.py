"""One Deepgram `/v1/speak` WebSocket client (a `SessionHandler`, app/api/websocket.py).

Client: `{"type": "Speak", "text": ...}`, `Flush`, `Clear`, `Close` (and `KeepAlive`).
Server: `Metadata` first; audio as bare binary frames in the asked encoding and rate;
`{"type": "Flushed", "sequence_id": n}` after the last byte of the n-th flush (from 0);
`{"type": "Cleared", "sequence_id": n}` once a clear has taken effect; `Warning` for a
message it could not use (the session goes on); `Error` before a close that ends it. The
session outlives every flush, for clients that pool connections (LiveKit). `Close` speaks
what is left, then closes with 1000.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from fastapi import WebSocket

from app.api import deps
from app.api.websocket import CloseSession, IdleTimeout, Sender, close_code
from app.api.ws_serve import open_session
from app.errors import GatewayError
from app.protocol import encodable
from app.service.gateway import Gateway
from app.service.session import Audio, Cleared, Failed, Finished, Flushed, SynthesisSession

if TYPE_CHECKING:
    from app.api.deepgram import SpeakParams

_FATAL = frozenset({"input_buffer_full"})


def model_uuid(model: str) -> str:
    """A stable id for a model name (Deepgram's `model_uuid`)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"orpheus-gateway/{model}"))


def warning(description: str, code: str) -> dict[str, Any]:
    # Both spellings: pipecat reads `description`, LiveKit logs `warn_msg`.
    return {
        "type": "Warning",
        "description": description,
        "code": code,
        "warn_msg": description,
        "warn_code": code,
    }


class DeepgramSession:
    def __init__(
        self, websocket: WebSocket, gateway: Gateway, params: SpeakParams, request_id: str
    ) -> None:
        settings = gateway.settings
        self.sender = Sender(websocket, settings.ws_send_timeout_seconds)
        self._websocket = websocket
        self._gateway = gateway
        self._params = params
        self._request_id = request_id
        self._session: SynthesisSession | None = None
        self._clears = 0
        self._closing = False

    async def open(self) -> None:
        """Resolve the voice and build the session (before the handshake is accepted)."""
        access = deps.voice_access(self._websocket)
        voice = await self._gateway.voices.resolve(self._params.voice, access)
        self._session = open_session(
            self._websocket, self._gateway, voice, self._params.options(), self._params.encoder
        )

    @property
    def session(self) -> SynthesisSession:
        assert self._session is not None, "open() first"
        return self._session

    @property
    def busy(self) -> bool:
        return self.session.busy

    def keepalive(self) -> None:
        return None  # Deepgram sends none; uvicorn's pings keep the connection alive

    def error_message(self, error: GatewayError) -> dict[str, Any] | None:
        if isinstance(error, IdleTimeout):
            return None
        code = (error.code or "error").upper()
        return {
            "type": "Error",
            "description": error.message,
            "code": code,
            "err_msg": error.message,
            "err_code": code,
        }

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.aclose()

    async def on_message(self, text: str | None, data: bytes | None) -> None:
        if text is None:
            await self.sender.json(warning("Binary messages are not accepted.", "INVALID_MESSAGE"))
            return
        try:
            message = json.loads(text)
        except ValueError:
            await self.sender.json(warning("The message is not JSON.", "INVALID_MESSAGE"))
            return
        kind = message.get("type") if isinstance(message, dict) else None
        if self._closing:
            return  # after Close nothing more is taken; what was sent is being spoken
        try:
            if kind == "Speak":
                speak = message.get("text")
                if not isinstance(speak, str) or not encodable(speak):
                    message_text = (
                        "Speak needs a text string of valid Unicode (no lone surrogates)."
                    )
                    await self.sender.json(warning(message_text, "INVALID_TEXT"))
                    return
                await self.session.append(speak)
            elif kind == "Flush":
                await self.session.flush()
            elif kind == "Clear":
                await self.session.clear()
            elif kind == "Close":
                self._closing = True
                await self.session.finish()
            elif kind != "KeepAlive":
                await self.sender.json(
                    warning(f"Unknown message type {kind!r}.", "UNKNOWN_MESSAGE_TYPE")
                )
        except GatewayError as exc:
            if exc.code in _FATAL or exc.status_code >= 500:
                raise CloseSession(close_code(exc), exc.code or "", exc) from exc
            await self.sender.json(warning(exc.message, (exc.code or "invalid").upper()))

    async def pump(self) -> None:
        await self.sender.json(
            {
                "type": "Metadata",
                "request_id": self._request_id,
                "model_name": self._params.model,
                "model_version": self._gateway.settings.model_name,
                "model_uuid": model_uuid(self._params.model),
            }
        )
        session = self.session
        while True:
            event = await session.next_event()
            if isinstance(event, Audio):
                await self.sender.bytes(event.data)
            elif isinstance(event, Flushed):
                await self.sender.json({"type": "Flushed", "sequence_id": event.flush})
            elif isinstance(event, Cleared):
                await self.sender.json({"type": "Cleared", "sequence_id": self._clears})
                self._clears += 1
            elif isinstance(event, Finished):
                return
            elif isinstance(event, Failed):
                error = event.error
                if not isinstance(error, GatewayError):
                    error = GatewayError("Internal error during synthesis.", code="internal_error")
                raise CloseSession(close_code(error), error.code or "", error)
