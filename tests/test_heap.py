"""The heap trimmer gives free pages back: a fragmented glibc heap shrinks when trimmed."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app.heap import HeapTrimmer, libc_malloc_trim, resident_bytes

ROOT = Path(__file__).resolve().parents[1]

# 200 MB freed in the middle of the heap: glibc keeps it, since the top is still in use.
FRAGMENT = """
from app.heap import HeapTrimmer, resident_bytes
first = bytearray(1 << 20)
del first  # freeing a mapped chunk raises glibc's mmap threshold past its size
blocks = [bytearray(512 << 10) for _ in range(400)]
pin = bytearray(512 << 10)
del blocks
before = resident_bytes()
released = HeapTrimmer(1).trim_now()
print(before, released, resident_bytes())
"""


@pytest.mark.skipif(libc_malloc_trim() is None, reason="no malloc_trim in this C library")
def test_trimming_returns_free_memory_held_in_the_middle_of_the_heap() -> None:
    out = subprocess.run(
        [sys.executable, "-c", FRAGMENT], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    before, released, after = (int(x) for x in out.split())
    assert released >= 150 << 20, out
    assert after <= before - (150 << 20), out


def test_the_thread_trims_every_interval_until_closed() -> None:
    calls = threading.Semaphore(0)
    trimmer = HeapTrimmer(0.01, trim=calls.release)
    assert trimmer.start()
    try:
        for _ in range(3):
            assert calls.acquire(timeout=5)
    finally:
        trimmer.close()
    done = trimmer.trims
    assert done >= 3
    time.sleep(0.1)
    assert trimmer.trims == done


def test_interval_zero_is_off() -> None:
    trimmer = HeapTrimmer(0, trim=lambda: None)
    assert not trimmer.start()
    trimmer.close()
    assert trimmer.trims == 0


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="no /proc")
def test_resident_bytes_is_this_process() -> None:
    rss = resident_bytes()
    status = Path("/proc/self/status").read_text().splitlines()
    vm_rss = next(int(line.split()[1]) << 10 for line in status if line.startswith("VmRSS:"))
    assert rss is not None
    assert abs(rss - vm_rss) < 8 << 20
