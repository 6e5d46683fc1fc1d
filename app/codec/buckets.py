"""The static shapes an accelerated decoder prepares, and fitting a batch into one of them.

CUDA graphs replay fixed shapes and torch.compile is warmed up on the shapes it will
see, so the accelerated decoders work from buckets: batch sizes x window lengths
(frames) x crops (the region a cropped decode computes, `app.codec.receptive`). Each
length has two crops: the interior one (``context`` frames off each side, ``pad``
samples beyond), which every window away from a stream edge fits, and the whole
window, which fits anything. A batch of ``B`` windows of ``n`` frames runs in the
shortest bucket that holds it without changing a sample it must return:

- frames are added only on a side where its exact region lies at least the receptive
  field away (`app.codec.grouping.paddable_sides`, the rule batch padding follows), as
  copies of the edge frame, so a true stream edge is never padded;
- the bucket's crop computes every sample asked for;
- rows are added as copies of the last row, and dropped again.

No bucket holds it: it is decoded eagerly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from app.audio.pcm import SAMPLE_RATE, SAMPLES_PER_FRAME
from app.codec.grouping import paddable_sides
from app.codec.tokens import Frames

Pcm = npt.NDArray[np.float32]
F: Final = SAMPLES_PER_FRAME
_CACHE_LIMIT: Final = 4096


def window_lengths(seconds: Iterable[float]) -> tuple[int, ...]:
    """Window buckets in frames of buckets in seconds of audio (the Scicom API's
    ``CUDA_GRAPH_BATCH``): the frames that hold that much audio, rounded up."""
    frames = {max(1, math.ceil(s * SAMPLE_RATE / F - 1e-6)) for s in seconds}
    return tuple(sorted(frames))


def batch_sizes(max_batch: int) -> tuple[int, ...]:
    """Powers of two below ``max_batch``, then ``max_batch``: a batch pads at most 2x."""
    if max_batch < 1:
        raise ValueError("max_batch must be >= 1")
    sizes = [1 << k for k in range(max_batch.bit_length()) if 1 << k < max_batch]
    return (*sizes, max_batch)


@dataclass(frozen=True, order=True)
class Shape:
    """One prepared decode: ``batch`` windows of ``length`` frames, computing the samples
    of frames ``keep`` plus ``pad`` samples each side (``keep == (0, length)``: all)."""

    batch: int
    length: int
    keep: tuple[int, int]
    pad: int

    @property
    def computed(self) -> tuple[int, int]:
        """The samples this decode returns exactly; it returns zeros elsewhere."""
        lo, hi = self.keep
        return max(0, lo * F - self.pad), min(self.length * F, hi * F + self.pad)

    @property
    def work(self) -> int:
        """Rough size, for the capture order: samples computed by all rows."""
        lo, hi = self.computed
        return self.batch * (hi - lo)

    def __str__(self) -> str:
        return f"B={self.batch} {self.length} frames keep {self.keep[0]}:{self.keep[1]}"


@dataclass(frozen=True)
class Placement:
    """Where a batch of ``rows`` windows of ``length`` frames sits in ``shape``: ``left``
    frames added before each window, the rest of the bucket's length after it."""

    shape: Shape
    rows: int
    length: int
    left: int


class BucketPlan:
    """The buckets of one decoder and the placement of batches into them (pure)."""

    def __init__(
        self,
        batches: Sequence[int],
        lengths: Sequence[int],
        *,
        context: int,
        pad: int,
        receptive_field: int,
    ) -> None:
        """``context``: frames a window carries each side (``DECODE_CONTEXT_FRAMES``);
        ``pad``: samples the pipeline asks beyond the kept frames (its crossfade)."""
        if not batches or not lengths or min(*batches, *lengths) < 1:
            raise ValueError("bucket batch sizes and lengths must be >= 1")
        if context < 0 or pad < 0 or receptive_field < 0:
            raise ValueError("context, pad and receptive_field must be >= 0")
        self.batches = tuple(sorted(set(batches)))
        self.lengths = tuple(sorted(set(lengths)))
        self.context = context
        self.pad = pad
        self.receptive_field = receptive_field
        self._cache: dict[tuple[int, int, tuple[int, int], int], Placement | None] = {}

    def crops(self, length: int) -> list[Shape]:
        """The crops of a ``length``-frame bucket of one row, cheapest first."""
        whole = Shape(1, length, (0, length), 0)
        c = self.context
        if c == 0 or length - 2 * c < 1:
            return [whole]
        return [Shape(1, length, (c, length - c), self.pad), whole]

    def shapes(self) -> list[Shape]:
        """Every bucket, the largest first: captured in that order, later graphs reuse the
        memory the earlier ones freed in the shared pool."""
        shapes = [
            Shape(b, crop.length, crop.keep, crop.pad)
            for b in self.batches
            for length in self.lengths
            for crop in self.crops(length)
        ]
        return sorted(shapes, key=lambda s: (-s.work, -s.batch, -s.length, s.keep))

    def place(
        self, rows: int, length: int, keep: tuple[int, int] | None = None, pad: int = 0
    ) -> Placement | None:
        """The bucket for ``rows`` windows of ``length`` frames that must return frames
        ``keep`` plus ``pad`` samples each side, or None (decode it eagerly)."""
        keep = (0, length) if keep is None else keep
        key = (rows, length, keep, pad)
        if key not in self._cache:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = self._search(rows, length, keep, pad)
        return self._cache[key]

    def _search(self, rows: int, length: int, keep: tuple[int, int], pad: int) -> Placement | None:
        batch = next((b for b in self.batches if b >= rows), None)
        if batch is None or rows < 1 or not 0 <= keep[0] < keep[1] <= length:
            return None
        left_ok, right_ok = paddable_sides(length, keep, pad, receptive_field=self.receptive_field)
        need_lo, need_hi = Shape(1, length, keep, pad).computed
        for size in (s for s in self.lengths if s >= length):
            extra = size - length
            # Frames added before the window: only where that side may be padded.
            lowest = 0 if right_ok or extra == 0 else extra
            highest = extra if left_ok else 0
            for crop in self.crops(size):
                have_lo, have_hi = crop.computed
                first = max(lowest, -((need_lo - have_lo) // F))  # ceil((have - need) / F)
                last = min(highest, (have_hi - need_hi) // F)
                if first <= last:
                    shape = Shape(batch, size, crop.keep, crop.pad)
                    return Placement(shape, rows, length, first)
        return None


def fit(frames: Frames, placement: Placement) -> Frames:
    """``frames`` ``(rows, length, 7)`` padded to the placement's bucket."""
    shape = placement.shape
    after = shape.length - placement.length - placement.left
    widths = ((0, shape.batch - placement.rows), (placement.left, after), (0, 0))
    return np.pad(np.asarray(frames, dtype=np.int64), widths, mode="edge")


def restore(
    pcm: npt.ArrayLike, placement: Placement, keep: tuple[int, int] | None, pad: int
) -> Pcm:
    """The batch's own ``(rows, length * 2048)`` of a bucket's output: its rows and frames,
    zeros outside the samples asked for, as the eager cropped decode returns them."""
    out = np.asarray(pcm, dtype=np.float32)
    start = placement.left * F
    own = out[: placement.rows, start : start + placement.length * F]
    keep = (0, placement.length) if keep is None else keep
    lo, hi = Shape(1, placement.length, keep, pad).computed
    result = np.zeros_like(own)
    result[:, lo:hi] = own[:, lo:hi]
    return result
