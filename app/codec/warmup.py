"""Warm-up at start-up: run each bucket shape once, logging progress and the total time.

Capturing a CUDA graph or compiling a shape takes from milliseconds to seconds, so an
accelerated decoder prepares every bucket before the gateway reports ready. A shape
that fails is logged as a warning and left to the eager decoder; the gateway never
fails to start because of it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from app.codec.buckets import Shape

logger = logging.getLogger(__name__)

WarmUp = Callable[[Callable[[], bool]], "WarmUpReport"]
"""Prepares a decoder; stops early once the predicate (the service closing) is true."""

_PROGRESS_SECONDS: Final = 5.0


@dataclass(frozen=True)
class WarmUpReport:
    what: str
    shapes: int
    prepared: int
    failed: int
    seconds: float
    stopped: bool = False


def warm_up_shapes(
    what: str,
    shapes: Sequence[Shape],
    prepare: Callable[[Shape], None],
    stop: Callable[[], bool],
    *,
    clock: Callable[[], float] = time.monotonic,
) -> WarmUpReport:
    """Call ``prepare`` on each shape; progress at most every 5 s and at every tenth."""
    total = len(shapes)
    started = last = clock()
    logger.info("decoder warm-up (%s): %d shapes", what, total)
    prepared = failed = 0
    stopped = False
    step = max(1, total // 10)
    for done, shape in enumerate(shapes, 1):
        if stop():
            stopped = True
            break
        try:
            prepare(shape)
            prepared += 1
        except Exception as exc:
            failed += 1
            logger.warning(
                "decoder warm-up (%s): %s failed (%s: %s); batches of that shape decode eagerly",
                what,
                shape,
                type(exc).__name__,
                exc,
            )
        now = clock()
        if done == total or done % step == 0 or now - last >= _PROGRESS_SECONDS:
            last = now
            logger.info(
                "decoder warm-up (%s): %d/%d shapes, %.1f s", what, done, total, now - started
            )
    seconds = clock() - started
    if stopped:
        logger.info("decoder warm-up (%s) stopped after %.1f s: shutting down", what, seconds)
    else:
        logger.info(
            "decoder warm-up (%s) done: %d of %d shapes ready in %.1f s%s",
            what,
            prepared,
            total,
            seconds,
            f", {failed} decode eagerly" if failed else "",
        )
    return WarmUpReport(what, total, prepared, failed, seconds, stopped)
