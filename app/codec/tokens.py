"""Audio token ids <-> SNAC frames and codebooks: the pure mapping, no torch.

The ids and their layout belong to the model family (`app.vocab`); this module
turns them into frames ``(n, 7)`` and SNAC's three codebooks and back. Every audio
id names its own slot, and the assembler uses that to notice a lost or garbled
token instead of silently shifting every later code into the wrong codebook (which
is what counting positions alone would do).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from app.errors import InvalidAudioTokens
from app.vocab import AUDIO_TOKEN_BASE, CODEBOOK_SIZE, TOKENS_PER_FRAME

# Positions inside a frame that belong to codebooks 1 and 2, in time order.
C1_SLOTS: Final = (1, 4)
C2_SLOTS: Final = (2, 3, 5, 6)

Frames = npt.NDArray[np.int64]
"""Shape ``(n, 7)`` (or ``(..., n, 7)``): one row of codes per frame, in token order."""

InvalidPolicy = Literal["resync", "fail"]


def frames_to_codes(
    frames: npt.ArrayLike,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Split frames ``(..., n, 7)`` into SNAC's codebooks in time order.

    Returns ``c0 (..., n)``, ``c1 (..., 2n)`` and ``c2 (..., 4n)``; leading batch
    dimensions are kept.
    """
    arr = _as_frames(frames)
    lead = arr.shape[:-2]
    c0 = np.ascontiguousarray(arr[..., 0])
    c1 = np.ascontiguousarray(arr[..., list(C1_SLOTS)]).reshape(*lead, -1)
    c2 = np.ascontiguousarray(arr[..., list(C2_SLOTS)]).reshape(*lead, -1)
    return c0, c1, c2


def codes_to_frames(c0: npt.ArrayLike, c1: npt.ArrayLike, c2: npt.ArrayLike) -> Frames:
    """Inverse of `frames_to_codes`: interleave the codebooks into ``(..., n, 7)`` frames."""
    a0 = np.asarray(c0, dtype=np.int64)
    a1 = np.asarray(c1, dtype=np.int64)
    a2 = np.asarray(c2, dtype=np.int64)
    n = a0.shape[-1]
    lead = a0.shape[:-1]
    if a1.shape != (*lead, 2 * n) or a2.shape != (*lead, 4 * n):
        raise ValueError(
            f"codebook shapes {a0.shape}, {a1.shape}, {a2.shape} are not (..., n), (..., 2n), "
            "(..., 4n)"
        )
    frames = np.empty((*lead, n, TOKENS_PER_FRAME), dtype=np.int64)
    frames[..., 0] = a0
    frames[..., list(C1_SLOTS)] = a1.reshape(*lead, n, 2)
    frames[..., list(C2_SLOTS)] = a2.reshape(*lead, n, 4)
    return frames


def frames_to_token_ids(frames: npt.ArrayLike) -> list[int]:
    """Token ids of ``(n, 7)`` frames, as a generation (or a cloning prompt) spells them."""
    arr = _as_frames(frames)
    if arr.ndim != 2:
        raise ValueError(f"expected frames of shape (n, 7), got {arr.shape}")
    slots = np.arange(TOKENS_PER_FRAME, dtype=np.int64) * CODEBOOK_SIZE
    return [int(t) for t in (arr + slots + AUDIO_TOKEN_BASE).reshape(-1)]


def _as_frames(frames: npt.ArrayLike) -> Frames:
    arr = np.asarray(frames, dtype=np.int64)
    if arr.ndim < 2 or arr.shape[-1] != TOKENS_PER_FRAME:
        raise ValueError(f"frames must have shape (..., n, 7), got {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() >= CODEBOOK_SIZE):
        raise ValueError(f"codes must be in 0..{CODEBOOK_SIZE - 1}")
    return arr


class FrameBuffer:
    """One stream's frames so far, grown in place: appending k frames costs O(k) amortised,
    where concatenating onto everything so far on every arrival was quadratic."""

    def __init__(self, capacity: int = 64) -> None:
        self._data = np.empty((max(1, capacity), TOKENS_PER_FRAME), dtype=np.int64)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    @property
    def frames(self) -> Frames:
        """A view of the frames so far (it stays valid: the buffer never shrinks)."""
        return self._data[: self._size]

    def extend(self, new: Frames) -> None:
        count = len(new)
        if self._size + count > len(self._data):
            rows = max(2 * len(self._data), self._size + count)
            grown = np.empty((rows, TOKENS_PER_FRAME), dtype=np.int64)
            grown[: self._size] = self._data[: self._size]
            self._data = grown
        self._data[self._size : self._size + count] = new
        self._size += count


class FrameAssembler:
    """Turns a generation's token ids into complete SNAC frames, one stream each.

    Non-audio ids (text, control tokens, the ``-1`` placeholder of a backend that
    cannot map a token) are skipped and counted in `non_audio` without breaking
    the frame, as canopy's decoder does. An audio id whose slot differs from its
    position in the current frame, or an id past the audio range, is invalid: it
    is counted in `invalid`, the partial frame is dropped (`dropped_frames`), and
    the stream resynchronises on the next slot-0 token (which may be the invalid
    token itself). Valid audio ids skipped while resynchronising are counted in
    `skipped`. A partial frame left at the end never becomes audio (`pending`).
    """

    def __init__(self, policy: InvalidPolicy = "resync", max_invalid: int | None = None) -> None:
        if policy not in ("resync", "fail"):
            raise ValueError(f"policy must be 'resync' or 'fail', got {policy!r}")
        if max_invalid is not None and max_invalid < 0:
            raise ValueError("max_invalid must be >= 0")
        self.policy: InvalidPolicy = policy
        self.max_invalid = max_invalid
        self.non_audio = 0
        self.invalid = 0
        self.dropped_frames = 0
        self.skipped = 0
        self.frames_emitted = 0
        self._partial: list[int] = []
        self._resyncing = False

    @property
    def pending(self) -> int:
        """Codes held in the incomplete frame; at end of stream they are discarded."""
        return len(self._partial)

    def feed(self, token_ids: Iterable[int]) -> Frames:
        """Consume token ids; return the frames they completed as an ``(k, 7)`` array."""
        # Called for every read of a stream's tokens: the slot and code are worked out
        # inline (`app.vocab.token_slot_code` is the same arithmetic), with no call per id.
        done: list[list[int]] = []
        partial = self._partial
        for token_id in token_ids:
            offset = token_id - AUDIO_TOKEN_BASE
            if offset < 0:
                self.non_audio += 1
                continue
            slot = offset // CODEBOOK_SIZE
            if slot >= TOKENS_PER_FRAME:
                self._reject(token_id, None)
                continue
            if self._resyncing:
                if slot:
                    self.skipped += 1
                    continue
                self._resyncing = False
            if slot == len(partial):
                partial.append(offset - slot * CODEBOOK_SIZE)
                if slot == TOKENS_PER_FRAME - 1:
                    done.append(partial.copy())
                    partial.clear()
            else:
                self._reject(token_id, slot)
                if not slot:
                    partial.append(offset)  # slot 0: the offset is the code
        self.frames_emitted += len(done)
        if not done:
            return np.empty((0, TOKENS_PER_FRAME), dtype=np.int64)
        return np.asarray(done, dtype=np.int64)

    def _reject(self, token_id: int, slot: int | None) -> None:
        """Count an invalid token, drop the partial frame, and enter resync unless slot 0."""
        expected = len(self._partial)
        self.invalid += 1
        if self.policy == "fail":
            raise InvalidAudioTokens(
                f"token id {token_id} cannot be audio at frame position {expected} "
                f"(it {'is outside the audio range' if slot is None else f'names slot {slot}'})"
            )
        if self.max_invalid is not None and self.invalid > self.max_invalid:
            raise InvalidAudioTokens(
                f"{self.invalid} invalid audio tokens exceed the limit of {self.max_invalid}"
            )
        if self._partial:
            self.dropped_frames += 1
            self._partial.clear()
        # An out-of-range id while already resyncing changes nothing: keep waiting for slot 0.
        self._resyncing = slot != 0
