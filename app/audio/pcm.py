"""The one place that states the gateway's PCM format.

Everything between the codec and the encoders is mono float32 at this rate; the
encoders convert to what each container wants.
"""

from typing import Final

SAMPLE_RATE: Final = 24_000
"""SNAC 24 kHz output rate, also the rate of every streamed format."""

SAMPLES_PER_FRAME: Final = 2048
"""One Orpheus frame (7 tokens, one coarse SNAC code) decodes to 2048 samples (85.3 ms)."""


def frames_to_seconds(frames: int) -> float:
    return frames * SAMPLES_PER_FRAME / SAMPLE_RATE
