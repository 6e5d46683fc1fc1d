"""Run the real gateway (uvicorn + create_app) on a loopback port in a background thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from app.api.http_server import server_options
from app.config import Settings
from app.demo.random_snac import write_random_snac
from app.main import create_app
from tests.support.vllm_server import VLLMServer


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # not in the main thread
        pass


@contextmanager
def running_gateway(settings: Settings, **uvicorn_options: Any) -> Iterator[str]:
    """Yield the base URL of a gateway serving `settings`; stop it on exit."""
    app = create_app(settings)
    # The protocol `python -m app` serves with (bounded heads, connection aborts).
    options = server_options(settings) | uvicorn_options
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", **options
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run, name="gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("gateway failed to start (see log above)")
        if time.monotonic() > deadline:
            raise TimeoutError("gateway did not start within 120 s")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def gateway_with_test_backend(tmp_path: Path) -> Iterator[str]:
    """A gateway wired as docker-compose.yaml wires one (tokens from a vLLM-compatible
    server, here the scriptable test one; a random-weight SNAC in-process), its files
    under `tmp_path`; its base URL."""
    with VLLMServer() as backend:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            tts_api=backend.url,
            model_name=backend.model,
            snac_model=str(write_random_snac(tmp_path / "snac")),
            device="cpu",
            data_dir=tmp_path,
        )
        with running_gateway(settings) as url:
            yield url
