"""RSS of the gateway with the in-process engine over many requests, by heap policy.

The gateway runs as `python -m app` with what `--demo` serves (the tiny random-weight
Llama with the Orpheus vocabulary and the real-size random SNAC 24 kHz, `TORCH_THREADS=1`,
`ENGINE_MAX_STREAMS=4`), and `--clients` clients send `--requests` speech requests (PCM,
MP3, WAV and Opus in turn, whole responses); with `--clone-every K` every K-th request is
a `POST /v1/audio/vc` with a `--reference-seconds` clip instead. Each policy runs in a
fresh process, one after the other in the same run:

- `untrimmed`: `MEMORY_TRIM_INTERVAL=0`, glibc's defaults (what the gateway did before);
- `mmap-threshold`: untrimmed, with `MALLOC_MMAP_THRESHOLD_=131072`, which stops glibc from
  raising its mmap threshold, so every large buffer is mapped and unmapped on its own;
- `trimmed`: the default, `malloc_trim(0)` every `MEMORY_TRIM_INTERVAL` (10) seconds.

It prints the RSS when ready, every `--every` requests, and once idle (after a trim
interval), and how long the requests took: wall time and the gateway's CPU time.

    python bench/in_process_memory.py [--requests 200] [--clients 4] [--every 50]
        [--clone-every 0] [--reference-seconds 20] [--policies untrimmed mmap-threshold trimmed]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.demo.random_snac import write_random_snac
from app.demo.tiny_llama import write_tiny_orpheus_llm
from tests.support.clips import chirp, encode_clip
from tests.support.gateway_process import GatewayProcess

POLICIES: dict[str, dict[str, str]] = {
    "untrimmed": {"MEMORY_TRIM_INTERVAL": "0"},
    "mmap-threshold": {"MEMORY_TRIM_INTERVAL": "0", "MALLOC_MMAP_THRESHOLD_": "131072"},
    "trimmed": {},
}
FORMATS = ("pcm", "mp3", "wav", "opus")
IDLE_WAIT = 12.0
"""Longer than the default trim interval."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process: on a shared machine, steadier than wall time."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_policy(name: str, models: Path, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as data:
        measure(name, models, Path(data), args)


def measure(name: str, models: Path, data: Path, args: argparse.Namespace) -> None:
    env = {
        "TTS_MODEL": str(models / "llm"), "SNAC_MODEL": str(models / "snac"), "DEVICE": "cpu",
        "SNAC_NOISE": "false", "TORCH_THREADS": "1", "ENGINE_MAX_STREAMS": "4",
        "DATA_DIR": str(data), "LOG_LEVEL": "warning", **POLICIES[name],
    }  # fmt: skip
    with GatewayProcess(env, data / "gateway.log") as gateway:
        print(f"{name}: ready, RSS {gateway.resident_mb():.0f} MB", flush=True)
        issued = 0
        lock = threading.Lock()
        statuses: dict[str, int] = {}
        assert gateway.process is not None
        pid = gateway.process.pid
        cpu = cpu_seconds(pid)
        started = time.monotonic()

        def client() -> None:
            nonlocal issued
            with httpx.Client(base_url=gateway.url, timeout=120) as http:
                while True:
                    with lock:
                        if issued >= args.requests:
                            return
                        issued += 1
                        n = issued
                    try:
                        status = str(request(http, n, args))
                    except httpx.HTTPError as exc:
                        status = type(exc).__name__
                    with lock:
                        statuses[status] = statuses.get(status, 0) + 1
                        done = sum(statuses.values())
                    if done % args.every == 0:
                        print(
                            f"  {done:4d} requests  RSS {gateway.resident_mb():6.0f} MB  "
                            f"{time.monotonic() - started:6.1f} s",
                            flush=True,
                        )

        clients = [threading.Thread(target=client) for _ in range(args.clients)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(pid) - cpu
        time.sleep(IDLE_WAIT)
        print(
            f"  idle after {args.requests} requests: RSS {gateway.resident_mb():.0f} MB; "
            f"requests took {elapsed:.1f} s, {cpu:.1f} CPU s; "
            f"statuses {dict(sorted(statuses.items()))}",
            flush=True,
        )


def request(http: httpx.Client, n: int, args: argparse.Namespace) -> int:
    text = f"Request {n}: the quick brown fox jumps over the lazy dog."
    fmt = FORMATS[n % len(FORMATS)]
    if args.clone_every and n % args.clone_every == 0:
        clip = encode_clip(chirp(args.reference_seconds, 24_000, f0=100.0 + n % 300), 24_000)
        form = {"reference_text": "My voice.", "generate_text": text, "response_format": fmt}
        files = {"reference_audio": ("reference.wav", clip, "audio/wav")}
        return http.post("/v1/audio/vc", data=form, files=files).status_code
    body = {"model": "tts-1", "voice": "tara", "seed": n, "input": text, "response_format": fmt}
    return http.post("/v1/audio/speech", json=body).status_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--clone-every", type=int, default=0)
    parser.add_argument("--reference-seconds", type=float, default=20.0)
    parser.add_argument("--policies", nargs="+", choices=sorted(POLICIES), default=list(POLICIES))
    args = parser.parse_args()
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="bench-models-") as tmp:
        models = Path(tmp)
        write_tiny_orpheus_llm(models / "llm")
        write_random_snac(models / "snac", tiny=False)
        for name in args.policies:
            run_policy(name, models, args)


if __name__ == "__main__":
    main()
