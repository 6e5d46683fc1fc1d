"""Wake the event loop once per frame of tokens, not once per token: ``SO_RCVLOWAT``.

vLLM sends one SSE event per token, each in a TCP segment of its own, and every segment
woke the loop: a read, uvloop's callback path and the parse cost about 20 µs of loop CPU
per token at 64 real-time streams, a third of the loop (docs/benchmarks.md, "Where the
event loop's time goes"). The consumer only wants whole frames, so the socket's receive
low-water mark is set to the bytes of the tokens it still waits for: the kernel then
reports the socket readable (and wakes the loop) once they are all in, or at end of
stream, or when its buffer is under pressure.

The mark is a wait for bytes the backend may never send (a stream that ends mid-frame
on a connection kept open, a stall): `patience` bounds it, after which `hold_off` puts
the mark back at one byte until data arrives again; setting it wakes a reader at once
if bytes are waiting (Linux `tcp_set_rcvlowat`). Plain TCP only: under TLS the kernel
counts ciphertext. A token's size is learnt from the first read of tokens that holds no
headers, so a stream's first frame comes in two reads, not seven; until two reads tell
the pace, the patience assumes real time.

While the consumer is away with a frame it has not taken yet (decoding, or a client
reading slowly), more reads only add to what it will take when it is back: `hold` raises
the mark so those bytes stay in the kernel, and `release` lets them in, in one read, when
the consumer waits again. At 64 real-time streams on two cores the consumer takes its
tokens about once in six frames, and each read it does not need costs the loop ~40 µs
(docs/benchmarks.md, "Reads while the consumer is away").
"""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
from typing import Final, Protocol, cast

_SMOOTHING: Final = 0.25
_MAX_MARK: Final = 64 * 1024
_PATIENCE_FLOOR: Final = 0.05
"""Seconds added to twice the expected arrival time of the tokens waited for."""
_FIRST_PACE: Final = 1 / 82
"""Seconds per token assumed until two reads tell the pace: real time, what vLLM gives
each stream at capacity (a slower backend only ends the first wait at its patience)."""


class _SocketLike(Protocol):
    def setsockopt(self, level: int, option: int, value: int, /) -> None: ...

    def fileno(self) -> int: ...


class LowWater:
    """The receive low-water mark of one backend connection."""

    def __init__(self, sock: _SocketLike) -> None:
        self._sock = sock
        self.mark = 1
        self._bytes_per_token: float | None = None
        self._seconds_per_token: float | None = None
        self._last_tokens_at: float | None = None
        self._held_off = False
        self._disabled = False
        self.holding = False
        """The mark is raised while the consumer is away (`hold`)."""

    @classmethod
    def of(cls, sock: object) -> LowWater | None:
        """For a transport's socket that takes ``SO_RCVLOWAT`` (None: not supported)."""
        if not hasattr(socket, "SO_RCVLOWAT"):
            return None
        if not (hasattr(sock, "setsockopt") and hasattr(sock, "fileno")):
            return None
        return cls(cast(_SocketLike, sock))

    @property
    def sized(self) -> bool:
        """A token's size in bytes is known (a mark can be set)."""
        return self._bytes_per_token is not None

    def observe(self, nbytes: int, tokens: int, now: float, *, size: bool = True) -> None:
        """A read of ``nbytes`` that brought ``tokens`` tokens at ``now`` (``size``: its
        bytes are events only, so they tell a token's size)."""
        self._held_off = False
        if tokens <= 0:
            return
        if size:
            self._bytes_per_token = _smooth(self._bytes_per_token, nbytes / tokens)
        if self._last_tokens_at is not None:
            pace = (now - self._last_tokens_at) / tokens
            self._seconds_per_token = _smooth(self._seconds_per_token, pace)
        self._last_tokens_at = now

    def want(self, tokens: int) -> float | None:
        """The consumer waits for ``tokens`` more tokens: wake the loop when they are in.
        Returns how long to wait under the mark for them (`patience`; None: no mark)."""
        held, self.holding = self.holding, False
        size = self._bytes_per_token
        # The size is known from the first read of tokens, so the first frame's other
        # tokens come in one read too; its pace only bounds the wait (`patience`).
        if self._held_off or self._disabled or size is None:
            if held:
                self._set(1)
            return self.patience(tokens)
        # Half a token short of the estimate: the last one is never held back for the next.
        mark = int(max(0.0, tokens - 0.5) * size)
        self._set(min(max(1, mark), _MAX_MARK))
        return self.patience(tokens)

    def patience(self, tokens: int) -> float | None:
        """Seconds to wait under the mark for ``tokens`` tokens (None: no mark is set)."""
        if self.mark <= 1:
            return None
        pace = self._seconds_per_token if self._seconds_per_token is not None else _FIRST_PACE
        return 2 * tokens * pace + _PATIENCE_FLOOR

    def hold(self) -> None:
        """The consumer is away with tokens to take: keep what follows in the kernel (it
        still wakes the loop at the end of the stream, on an error, or at the largest mark)."""
        if self._disabled or self.holding:
            return
        self.holding = True
        self._set(_MAX_MARK)

    def release(self) -> bool:
        """The consumer waits again after a `hold`: True if bytes came meanwhile, and then
        the mark is one byte, so the loop reads them at once; False: nothing came, and the
        mark stays raised for the consumer's next time away."""
        if not self.waiting():
            return False
        self.holding = False
        self._set(1)
        return True

    def waiting(self) -> int:
        """Bytes received and not read yet."""
        try:
            count = fcntl.ioctl(self._sock.fileno(), termios.FIONREAD, _INT)
        except OSError:
            return 1  # cannot tell: read what there is, as without the hold
        return int(struct.unpack("i", count)[0])

    def hold_off(self) -> None:
        """Read whatever is in until data arrives again (the wait took too long)."""
        self._held_off = True
        self._set(1)

    def _set(self, mark: int) -> None:
        if mark == self.mark:
            return
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, mark)
        except OSError:
            self._disabled = True  # the platform refuses: stay at one byte for good
            return
        self.mark = mark


_INT: Final = bytes(4)


def _smooth(average: float | None, value: float) -> float:
    return value if average is None else average + _SMOOTHING * (value - average)
