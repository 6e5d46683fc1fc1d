"""`WORKERS=N`: N gateway processes sharing one listening socket, under uvicorn's supervisor.

Each worker is a whole gateway (its own decoder service, engine client and stream
slots), started with `spawn` from the same settings. Their metrics go to one
prometheus-client multiprocess directory, so `/metrics` adds up across workers
whichever answers. Limits that live in a process — `MAX_CONCURRENT_STREAMS`,
`RATE_LIMIT_PER_MINUTE`, `ENGINE_MAX_STREAMS` — apply per worker. The supervisor
restarts a worker that dies and, on SIGTERM, lets each worker drain before exiting.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from app.api.logs import configure_logging
from app.config import Settings
from app.main import create_app

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def worker_app(settings: Settings) -> FastAPI:
    """The app of one worker process (logging is set up anew in each)."""
    configure_logging(settings.log_level)
    return create_app(settings)


def metrics_directory(settings: Settings) -> tuple[Path, bool]:
    """An empty multiprocess directory: the configured one wiped, or a fresh temporary one
    (True: ours to remove on exit)."""
    configured = settings.prometheus_multiproc_dir
    if configured is None:
        return Path(tempfile.mkdtemp(prefix="gateway-metrics-")), True
    configured.mkdir(parents=True, exist_ok=True)
    # Files of a previous run would be added to this run's totals.
    for stale in configured.glob("*.db"):
        stale.unlink()
    return configured, False


def serve_workers(settings: Settings, **uvicorn_options: Any) -> int:
    directory, owned = metrics_directory(settings)
    # prometheus-client reads this when each spawned worker imports it.
    os.environ[MULTIPROC_ENV] = str(directory)
    settings = settings.model_copy(update={"prometheus_multiproc_dir": directory})
    if settings.tts_demo:
        # Built once here rather than by every worker at the same time.
        from app.demo.models import ensure_demo_models

        ensure_demo_models(settings.cache_dir)
    config = uvicorn.Config(
        functools.partial(worker_app, settings),
        factory=True,
        workers=settings.workers,
        **uvicorn_options,
    )
    sock = config.bind_socket()
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()
        if owned:
            shutil.rmtree(directory, ignore_errors=True)
    return 0
