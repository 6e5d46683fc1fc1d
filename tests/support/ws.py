"""A WebSocket client's view of a session: every message the gateway sent, in order."""

from __future__ import annotations

import asyncio
import json
import struct
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

HEADER = struct.Struct("<II")


def ws_url(base: str, path: str) -> str:
    return base.replace("http://", "ws://", 1) + path


@dataclass
class Received:
    events: list[dict[str, Any]] = field(default_factory=list)
    """JSON messages, in order; a binary frame appears as {"type": "<binary>", ...}."""
    close_code: int | None = None
    close_reason: str = ""

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    def audio(self, segment: int | None = None) -> bytes:
        return b"".join(
            e["data"]
            for e in self.events
            if e["type"] == "<binary>" and (segment is None or e["segment"] == segment)
        )

    def types(self) -> list[str]:
        """Message types, runs of audio collapsed to one."""
        out: list[str] = []
        for e in self.events:
            if not (out and out[-1] == e["type"] == "<binary>"):
                out.append(e["type"])
        return out


def parse(message: str | bytes, *, header: bool = True) -> dict[str, Any]:
    if isinstance(message, str):
        event: dict[str, Any] = json.loads(message)
        return event
    if not header:
        return {"type": "<binary>", "data": message}
    segment, sequence = HEADER.unpack_from(message)
    return {"type": "<binary>", "segment": segment, "sequence": sequence, "data": message[8:]}


async def read_until(
    ws: ClientConnection,
    received: Received,
    kind: str,
    *,
    within: float = 20.0,
    header: bool = True,
) -> dict[str, Any] | None:
    """Read into ``received`` until a message of ``kind`` (returned), or the close (None)."""
    async with asyncio.timeout(within):
        while True:
            try:
                message = await ws.recv()
            except ConnectionClosed as closed:
                frame = closed.rcvd
                received.close_code = frame.code if frame is not None else None
                received.close_reason = frame.reason if frame is not None else ""
                return None
            event = parse(message, header=header)
            received.events.append(event)
            if event["type"] == kind:
                return event


async def send(ws: ClientConnection, **message: Any) -> None:
    await ws.send(json.dumps(message))


__all__ = ["ClientConnection", "Received", "connect", "read_until", "send", "ws_url"]
