"""Gives the C heap's free pages back to the OS every few seconds (glibc `malloc_trim`).

torch, PyAV and numpy take their large buffers from malloc. glibc keeps what they free in
its arenas (one per thread that allocated, up to eight per core) and returns only the top
of each heap, so per-request tensors on the generation threads and the decoder thread
leave the arenas holding free memory the process never gives back: with the in-process
engine and the real-size SNAC the RSS went from 606 to 1,180 MB in 50 requests and stayed
there, most of it free (590 MB of 868 MB in arenas; docs/operations.md, "Soak").
`malloc_trim(0)` releases every free page of every arena (18-42 ms for a 1 GB heap here). A
fixed `M_MMAP_THRESHOLD` bounds the RSS too, but then every large tensor costs a fresh
mapping and its page faults: 35 % more CPU for the same requests (bench/in_process_memory.py).
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int | None:
    """This process's resident set size, where /proc tells it (Linux)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None


def libc_malloc_trim() -> Callable[[], None] | None:
    """glibc's `malloc_trim(0)`, or None where the C library has none (musl, macOS)."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


class HeapTrimmer:
    """A daemon thread that calls `trim` every `interval` seconds until closed."""

    def __init__(self, interval: float, trim: Callable[[], None] | None = None) -> None:
        if interval < 0:
            raise ValueError("interval must be >= 0")
        self.interval = interval
        self._trim = trim if trim is not None else libc_malloc_trim()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.trims = 0

    def start(self) -> bool:
        """Start trimming; False when it is off (interval 0) or the C library cannot."""
        if self.interval == 0 or self._trim is None:
            if self.interval and self._trim is None:
                log.info("no malloc_trim in this C library: freed heap memory is not trimmed")
            return False
        self._thread = threading.Thread(target=self._run, name="heap-trimmer", daemon=True)
        self._thread.start()
        return True

    def trim_now(self) -> int:
        """Trim once; the bytes of RSS that went back to the OS (0 where unknown)."""
        if self._trim is None:
            return 0
        before = resident_bytes()
        started = time.perf_counter()
        self._trim()
        after = resident_bytes()
        released = max(0, before - after) if before is not None and after is not None else 0
        self.trims += 1
        if released >= 1 << 20:
            log.debug(
                "heap trim returned %.1f MB in %.1f ms",
                released / 2**20,
                (time.perf_counter() - started) * 1000,
            )
        return released

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.trim_now()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
