"""FFmpeg's thread pools, counted in fresh interpreters: the setting is process-wide, and
an in-process gateway of another test may have set it in this one already."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Threads of the process after each step: open encoders that have written, then after
# they are closed or finalized while the objects are still referenced.
_COUNT = """
import ctypes, json, os, sys
import numpy as np
from app.audio import ffmpeg_threads
from app.audio.encoders import create_encoder

def threads():
    return len(os.listdir("/proc/self/task"))

mode = sys.argv[1]
if mode == "single":
    assert ffmpeg_threads.single_threaded_ffmpeg()
else:  # as a 4-core host would: FFmpeg sizes its pools by the CPUs it may use
    ctypes.CDLL(ffmpeg_threads._loaded_libavutil()).av_cpu_force_count(4)
pcm = (np.random.default_rng(0).standard_normal(4096) * 0.1).astype(np.float32)
create_encoder("wav").write(pcm)  # numpy's and the interpreter's own threads exist now
before = threads()
streamed = [create_encoder(fmt) for fmt in ("mp3", "opus", "aac", "flac")]
files = [create_encoder(fmt, streaming=False) for fmt in ("mp3", "opus", "aac", "flac")]
for encoder in streamed + files:
    encoder.write(pcm)
open_ = threads()
for encoder in streamed:
    encoder.close()
for encoder in files:
    encoder.finalize()
print(json.dumps({"before": before, "open": open_, "after": threads()}))
"""


def counts(mode: str) -> dict[str, int]:
    result = subprocess.run(
        [sys.executable, "-c", _COUNT, mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="threads are counted in /proc"
)


def test_ffmpeg_made_single_threaded_starts_no_threads_for_encoders() -> None:
    seen = counts("single")
    assert seen["open"] == seen["before"], seen


def test_a_closed_encoder_holds_no_ffmpeg_threads_while_it_is_still_referenced() -> None:
    seen = counts("four")
    assert seen["open"] > seen["before"], f"FFmpeg started no pools to free: {seen}"
    assert seen["after"] == seen["before"], seen
