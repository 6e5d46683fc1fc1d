"""Demo models: a tiny random-weight Orpheus LLM and a random SNAC, built offline once.

They let the whole gateway run (``--demo``) with no download and no GPU; the audio
is noise, but every token, frame and byte takes the production path. The build is
written to a temporary folder and renamed into place, with a marker file written
last, so an interrupted build is never mistaken for a finished one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from app.demo.random_snac import write_random_snac
from app.demo.tiny_llama import write_tiny_orpheus_llm

log = logging.getLogger(__name__)

BUILD_VERSION = 1
"""Bump when the builders change, so caches from older builds are rebuilt."""
MARKER = "COMPLETE.json"
_SEED = 0


@dataclass(frozen=True)
class DemoModels:
    llm_dir: Path
    snac_dir: Path


def ensure_demo_models(cache_dir: Path) -> DemoModels:
    """Return the demo models under ``cache_dir``, building them first if needed."""
    cache_dir = Path(cache_dir)
    final = cache_dir / f"demo-v{BUILD_VERSION}"
    models = DemoModels(llm_dir=final / "llm", snac_dir=final / "snac")
    if (final / MARKER).is_file():
        log.info("using the demo models in %s", final)
        return models
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=cache_dir))
    try:
        _build(staging)
        _publish(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return models


def _build(staging: Path) -> None:
    started = time.monotonic()
    log.info(
        "building the demo models (random weights, nothing is downloaded) in %s", staging.parent
    )
    write_tiny_orpheus_llm(staging / "llm", seed=_SEED)
    log.info("demo LLM: tiny Llama with the Orpheus vocabulary -> llm/")
    # Real 24 kHz dimensions: the decoder then costs what the real one costs (about
    # 3x real time on 2 CPU cores), so the demo shows true codec latency.
    write_random_snac(staging / "snac", tiny=False, seed=_SEED)
    log.info("demo codec: SNAC 24 kHz with real dimensions -> snac/")
    marker = {"version": BUILD_VERSION, "seed": _SEED, "built_unix": time.time()}
    (staging / MARKER).write_text(json.dumps(marker) + "\n")
    log.info("demo models built in %.1f s", time.monotonic() - started)


def _publish(staging: Path, final: Path) -> None:
    if final.exists() and not (final / MARKER).is_file():
        log.warning("removing the incomplete demo build at %s", final)
        shutil.rmtree(final)
    try:
        os.rename(staging, final)
    except OSError:
        # Another process finished first; its build is as good as ours.
        if not (final / MARKER).is_file():
            raise
        log.info("another process built the demo models first; using %s", final)
