"""Run the real `python -m app --demo` process on a loopback port (tiny models, no network)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_demo(root: Path, **env_overrides: str) -> Iterator[str]:
    """Yield the base URL of a demo gateway whose cache, data and log live in `root`."""
    port = free_port()
    env = {
        **os.environ,
        "CACHE_DIR": str(root / "cache"),
        "DATA_DIR": str(root / "data"),
        "TORCH_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        **env_overrides,
    }
    env.pop("TTS_API", None)
    log_path = root / "server.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "--demo", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                pytest.fail("demo server exited:\n" + log_path.read_text()[-3000:])
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("demo server not ready in 240 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
