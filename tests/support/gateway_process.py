"""Run the real gateway as its own process (`python -m app`), as a container would.

For what a thread cannot show: signals (SIGTERM drain), worker processes, two
gateways sharing a database. Settings come from the environment only; output goes
to a log file that a failing test prints.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def backend_env(vllm_url: str, snac_dir: Path, data_dir: Path, **extra: str) -> dict[str, str]:
    """Settings for a gateway fed by the test vLLM server and the tiny SNAC."""
    return {
        "TTS_API": vllm_url,
        "MODEL_NAME": "tinyorpheus",
        "SNAC_MODEL": str(snac_dir),
        "DEVICE": "cpu",
        "SNAC_NOISE": "false",
        "TORCH_THREADS": "1",
        "DATA_DIR": str(data_dir),
        "FIRST_TOKEN_TIMEOUT": "5",
        "INTER_TOKEN_TIMEOUT": "5",
        "BACKEND_CONNECT_TIMEOUT": "1",
        **extra,
    }


class GatewayProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.env = env
        self.log_path = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> Self:
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> None:
        """Start the process without waiting (start several, then `wait_ready` each)."""
        # Only what the test sets: no .env, no settings leaking in from the caller.
        base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
        env = {**base, "PYTHONPATH": str(ROOT), **self.env, "PORT": str(self.port)}
        env.setdefault("HOST", "127.0.0.1")
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app"], cwd=self.log_path.parent, env=env,
                stdout=log, stderr=subprocess.STDOUT,
                # A group of its own: worker processes go with it (see kill).
                start_new_session=True,
            )  # fmt: skip

    def wait_ready(self, timeout: float = 120.0) -> Self:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"gateway not ready within {timeout:g} s:\n{self.log()}")
            time.sleep(0.1)

    def resident_mb(self) -> float:
        """The process's resident set size (VmRSS), in MiB."""
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kib = next(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")
        )
        return kib / 1024

    def log(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace")[-6000:]

    def terminate(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(30)
        self.kill()  # whatever is left of the group
