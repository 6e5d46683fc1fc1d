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
    its exact region; otherwise it needs a group of its exact length. Groups come back
    ordered by their earliest request, so the caller's priority order is kept.
    """
    order = sorted(range(len(requests)), key=lambda i: (-requests[i].length, i))
    groups: list[tuple[int, list[Slot]]] = []
    for i in order:
        r = requests[i]
        n = r.length
        left_ok, right_ok = paddable_sides(n, r.keep, r.pad, receptive_field=receptive_field)
        for length, slots in reversed(groups):  # shortest first: least padding
            extra = length - n
            if extra == 0:
                slots.append(Slot(i, 0, 0))
                break
            if (left_ok or right_ok) and extra <= max_padding * length:
                slots.append(Slot(i, 0, extra) if right_ok else Slot(i, extra, 0))
                break
        else:
            groups.append((n, [Slot(i, 0, 0)]))
    planned = [
        Group(length, tuple(sorted(slots, key=lambda s: s.index))) for length, slots in groups
    ]
    return sorted(planned, key=lambda g: g.slots[0].index)


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
