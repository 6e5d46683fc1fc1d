"""Which decode windows share one codec call, and where each is padded.

SNAC's decoder is not causal, so padding a window to a group's length is allowed
only on a side where its kept region lies at least ``context`` frames from the
window's edge: the padding then stays outside the receptive field of every kept
sample. A side at a true stream edge (first or last window) is never padded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Slot:
    """Where one window sits in a group: its index in the batch and its padding in frames."""

    index: int
    left: int
    right: int


@dataclass(frozen=True)
class Group:
    """Windows decoded together in one codec call, all padded to ``length`` frames."""

    length: int
    slots: tuple[Slot, ...]


def plan_groups(
    windows: Sequence[tuple[int, int, int]], *, context: int, max_padding: float = 0.25
) -> list[Group]:
    """Split windows ``(frames, keep_start, keep_end)`` into same-length groups.

    A window joins a longer group when the padding is at most ``max_padding`` of the
    group's length and goes on a side at least ``context`` (and 1) frames from the kept
    region; otherwise it needs a group of its exact length. Groups come back ordered by
    their earliest window, so the caller's priority order is kept.
    """
    margin = max(context, 1)
    order = sorted(range(len(windows)), key=lambda i: (-windows[i][0], i))
    groups: list[tuple[int, list[Slot]]] = []
    for i in order:
        n, keep_start, keep_end = windows[i]
        right_ok = n - keep_end >= margin
        left_ok = keep_start >= margin
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
