"""`python -m app`: start the gateway with uvicorn (HOST/PORT honoured)."""

from __future__ import annotations

import argparse
import faulthandler
import os
import sys
from typing import Any

# Before torch loads: OpenMP's default busy-waiting makes torch threads spin against
# the event loop and the decoder thread; on small machines a window decode then took
# 20x longer (docs/benchmarks.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import uvicorn

from app.api.http_server import server_options
from app.api.logs import configure_logging
from app.config import SettingsError, load_settings
from app.main import create_app

_LEFTOVER_SECONDS = 5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    parser.add_argument("--host", help="bind address (default: HOST or 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port (default: PORT or 8000)")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="serve offline with tiny random-weight models (audio is noise; for trying the API)",
    )
    args = parser.parse_args(argv)
    overrides: dict[str, object] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port:
        overrides["port"] = args.port
    if args.demo:
        overrides["tts_demo"] = True
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    # A crash in native code (FFmpeg, torch) leaves every thread's Python stack in the log
    # instead of a bare exit code 139.
    faulthandler.enable()
    # uvicorn's own loggers propagate to the JSON handler; the app logs access lines.
    # A failed start-up (e.g. a model that cannot load) makes uvicorn exit with code 3.
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "log_config": None,
        "access_log": False,
        # Streams are drained by the app before uvicorn shuts down (app/api/draining.py):
        # this bounds only what is left, such as an upload still arriving.
        "timeout_graceful_shutdown": _LEFTOVER_SECONDS,
        # Bounded request heads, and connection aborts for streams (app/api/http_server.py).
        **server_options(settings),
    }
    if settings.workers > 1:
        from app.workers import serve_workers

        return serve_workers(settings, **options)
    uvicorn.run(create_app(settings), **options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
