"""Start-up objects out of the cyclic garbage collector's way.

Torch, NumPy, FastAPI and the models leave a few hundred thousand tracked objects once
the gateway is built, and every full (generation 2) collection walks all of them on
whichever thread triggered it, the event loop most often: at 64 real-time streams one
such pass held the loop for 148 ms, a gap for every listener at once (docs/benchmarks.md,
"One stall timer a connection, start-up objects frozen"). They live as long as the
process, so `frozen_startup` moves them to the permanent generation (`gc.freeze`); what
requests allocate is collected as before.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def frozen_startup() -> Iterator[None]:
    """While inside: every object alive on entry is left out of collections."""
    gc.collect()  # garbage of the start-up itself is freed, not frozen
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
