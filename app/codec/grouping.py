"""Which decode requests share one codec call, where each is padded, and the padded batch.

SNAC's decoder is not causal, so padding a window to a group's length is allowed
only on a side where its exact region lies at least ``receptive_field`` frames from
the window's edge: the padding then stays outside the receptive field of every kept
sample. A side at a true stream edge (first or last window) is never padded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.audio.pcm import SAMPLES_PER_FRAME
from app.codec.request import DecodeRequest, exact_region
from app.codec.tokens import Frames

Pcm = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Slot:
    """Where one request sits in a group: its index in the batch and its padding in frames."""

    index: int
    left: int
    right: int


@dataclass(frozen=True)
class Group:
    """Requests decoded together in one codec call, all padded to ``length`` frames."""

    length: int
    slots: tuple[Slot, ...]

    @property
    def padded_frames(self) -> int:
        return sum(s.left + s.right for s in self.slots)


def plan_groups(
    requests: Sequence[DecodeRequest], *, receptive_field: int, max_padding: float = 0.25
) -> list[Group]:
    """Split requests into same-length groups.

    A request joins a longer group when the padding is at most ``max_padding`` of the
    group's length and goes on a side at least ``receptive_field`` (and 1) frames from
    its exact region; otherwise it needs a group of its exact length. It joins only
    where the group's exact region, the span every row of the call computes (the crop is
    one for all), stays within ``1 + max_padding`` times each member's own: a stream's
    last window (four kept frames) in a call of one-frame windows would make every row
    decode four. Groups come back ordered by their earliest request, so the caller's
    priority order is kept.
    """
    order = sorted(range(len(requests)), key=lambda i: (-requests[i].length, i))
    groups: list[_Forming] = []
    for i in order:
        r = requests[i]
        n = r.length
        left_ok, right_ok = paddable_sides(n, r.keep, r.pad, receptive_field=receptive_field)
        first, end = r.exact_region
        for group in reversed(groups):  # shortest first: least padding
            extra = group.length - n
            if extra == 0:
                slot = Slot(i, 0, 0)
            elif (left_ok or right_ok) and extra <= max_padding * group.length:
                slot = Slot(i, 0, extra) if right_ok else Slot(i, extra, 0)
            else:
                continue
            if group.admits(first + slot.left, end + slot.left, max_padding):
                group.add(slot, first + slot.left, end + slot.left)
                break
        else:
            groups.append(_Forming(n, [Slot(i, 0, 0)], first, end, end - first))
    planned = [
        Group(group.length, tuple(sorted(group.slots, key=lambda s: s.index))) for group in groups
    ]
    return sorted(planned, key=lambda g: g.slots[0].index)


@dataclass
class _Forming:
    """A group being planned: its members and the union of their exact regions."""

    length: int
    slots: list[Slot]
    first: int
    end: int
    narrowest: int
    """The smallest exact region of a member, in frames."""

    def admits(self, first: int, end: int, max_padding: float) -> bool:
        span = max(self.end, end) - min(self.first, first)
        return span <= (1 + max_padding) * min(self.narrowest, end - first)

    def add(self, slot: Slot, first: int, end: int) -> None:
        self.slots.append(slot)
        self.first, self.end = min(self.first, first), max(self.end, end)
        self.narrowest = min(self.narrowest, end - first)


def paddable_sides(
    length: int, keep: tuple[int, int], pad: int, *, receptive_field: int
) -> tuple[bool, bool]:
    """``(left, right)``: may frames be added on that side of a ``length``-frame window that
    must return frames ``keep`` plus ``pad`` samples each side? Only where the exact region
    lies at least ``receptive_field`` (and 1) frames from the edge: a true stream edge (no
    context there) never is."""
    margin = max(receptive_field, 1)
    first, end = exact_region(length, keep, pad)
    return first >= margin, length - end >= margin


@dataclass(frozen=True)
class Batch:
    """One codec call: ``frames`` ``(B, length, 7)``, cropped to ``keep`` with ``pad``."""

    frames: Frames
    keep: tuple[int, int]
    pad: int


def assemble(requests: Sequence[DecodeRequest], group: Group) -> Batch:
    """The padded batch of ``group``; one crop for all: the union of the kept regions
    (each stays exact), and the largest pad."""
    members = [(requests[s.index], s) for s in group.slots]
    padded = [np.pad(r.frames, ((s.left, s.right), (0, 0)), mode="edge") for r, s in members]
    keep = (
        min(s.left + r.keep[0] for r, s in members),
        max(s.left + r.keep[1] for r, s in members),
    )
    return Batch(np.stack(padded), keep, max(r.pad for r, _ in members))


def split(pcm: npt.ArrayLike, requests: Sequence[DecodeRequest], group: Group) -> list[Pcm]:
    """Each request's own samples ``(length * 2048,)`` from the batch's ``(B, ...)`` output."""
    batch = np.asarray(pcm, dtype=np.float32)
    expected = (len(group.slots), group.length * SAMPLES_PER_FRAME)
    if batch.shape != expected:
        raise ValueError(f"codec returned shape {batch.shape}, expected {expected}")
    out: list[Pcm] = []
    for row, slot in zip(batch, group.slots, strict=True):
        start = slot.left * SAMPLES_PER_FRAME
        own = row[start : start + requests[slot.index].length * SAMPLES_PER_FRAME]
        # A single row is returned as a view; rows of a batch are copied so they do not
        # keep the whole batch alive.
        out.append(own if len(group.slots) == 1 else own.copy())
    return out
