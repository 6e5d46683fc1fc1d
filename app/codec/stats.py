"""The codec service's counters, and the consistent snapshot metrics and admission read."""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass(frozen=True)
class CodecStats:
    """A consistent snapshot of the service's counters."""

    queue_depth: int
    queue_capacity: int
    queued_frames: int
    """Frames waiting to be decoded: with `seconds_per_frame`, the backlog in seconds."""
    running: bool
    batches: int
    """Codec calls made (one per same-length group)."""
    jobs: int
    """Windows that went through the codec."""
    last_batch_size: int
    batch_size_histogram: dict[int, int]
    frames_decoded: int
    padded_frames: int
    decode_seconds_total: float
    last_decode_seconds: float
    queue_wait_seconds_total: float
    last_queue_wait_seconds: float
    errors: int
    """Jobs failed with `DecodeError`."""
    rejected: int
    """Submissions refused with `Overloaded` because the queue was full."""
    cancelled: int
    """Jobs withdrawn while still queued (the client left)."""
    encodes: int

    @property
    def seconds_per_frame(self) -> float:
        """Mean codec time per decoded frame (padding included) so far."""
        return self.decode_seconds_total / self.frames_decoded if self.frames_decoded else 0.0


@dataclass
class CodecCounters:
    """Mutable counters; the service updates and snapshots them under its own lock."""

    batches: int = 0
    jobs: int = 0
    last_batch_size: int = 0
    batch_size_histogram: dict[int, int] = field(default_factory=dict)
    frames_decoded: int = 0
    padded_frames: int = 0
    decode_seconds_total: float = 0.0
    last_decode_seconds: float = 0.0
    queue_wait_seconds_total: float = 0.0
    last_queue_wait_seconds: float = 0.0
    errors: int = 0
    rejected: int = 0
    cancelled: int = 0
    encodes: int = 0

    def record_batch(self, size: int, length: int, padded: int, seconds: float) -> None:
        """One codec call of ``size`` windows padded to ``length`` frames."""
        self.batches += 1
        self.jobs += size
        self.last_batch_size = size
        self.batch_size_histogram[size] = self.batch_size_histogram.get(size, 0) + 1
        self.frames_decoded += size * length
        self.padded_frames += padded
        self.decode_seconds_total += seconds
        self.last_decode_seconds = seconds

    def record_wait(self, seconds: float) -> None:
        self.queue_wait_seconds_total += seconds
        self.last_queue_wait_seconds = seconds

    def snapshot(
        self, *, queue_depth: int, queue_capacity: int, queued_frames: int, running: bool
    ) -> CodecStats:
        counts = {f.name: getattr(self, f.name) for f in fields(self)}
        counts["batch_size_histogram"] = dict(sorted(self.batch_size_histogram.items()))
        return CodecStats(
            queue_depth=queue_depth,
            queue_capacity=queue_capacity,
            queued_frames=queued_frames,
            running=running,
            **counts,
        )
