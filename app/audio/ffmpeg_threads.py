"""FFmpeg's own thread pools, which the gateway turns off.

PyAV encodes audio through a filter graph that it builds for every encoder (its
resampler), and FFmpeg gives each graph a pool of as many threads as the process may
run on CPUs: on a 2-core host every mp3, aac, opus or flac stream held 2 idle threads,
on a 64-core node 64, until the encoder was garbage-collected. A speech stream's audio
is a few kilobytes a chunk; the gateway's parallelism is across streams, and a pool
inside one stream only costs threads (bench: no change in encode CPU either way).

`av_cpu_force_count(1)` makes FFmpeg's automatic thread counts (filter graphs, codecs
with ``thread_count`` 0) one for the whole process: call `single_threaded_ffmpeg` once,
at start-up.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from pathlib import Path

import av

log = logging.getLogger(__name__)


def _loaded_libavutil() -> str | None:
    """The libavutil that PyAV itself loaded (its wheel bundles one, under a hashed name)."""
    if sys.platform.startswith("linux"):
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.rsplit(maxsplit=1)[-1]
                if "libavutil" in Path(path).name:
                    return path
    package = Path(av.__file__).parent
    for folder in (package.parent / "av.libs", package / ".dylibs"):
        for candidate in sorted(folder.glob("*avutil*")):
            return str(candidate)
    return None


def single_threaded_ffmpeg() -> bool:
    """Make FFmpeg's automatic thread counts one; False (and a log line) where PyAV's
    libavutil cannot be found or lacks the call."""
    path = _loaded_libavutil()
    if path is None:
        log.info("libavutil not found: FFmpeg keeps its own thread pools")
        return False
    try:
        libavutil = ctypes.CDLL(path)
        libavutil.av_cpu_force_count(ctypes.c_int(1))
    except (OSError, AttributeError) as exc:
        log.info("FFmpeg keeps its own thread pools (%s)", exc)
        return False
    return True
