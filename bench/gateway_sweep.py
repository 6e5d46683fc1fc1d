"""How many streams does the gateway hold on this machine? A `stress_test sweep` against a
paced backend.

Starts the paced backend (bench/paced_backend.py: every stream at `--rate` tokens/s, one
token per SSE event, `--seconds` of audio per request), the gateway as a subprocess
(`python -m app`, a random-weight SNAC written by app/demo/random_snac.py: `tiny` or the
real 24 kHz architecture, SNAC_NOISE=false, TORCH_THREADS=1), waits until it is ready, runs
`python -m stress_test sweep` against it and prints its report (and the load average).

    nice python bench/gateway_sweep.py --snac tiny --levels 1,2,4,8,16,32 --duration 15
    nice python bench/gateway_sweep.py --snac real --levels 1,2,4,8 --duration 15

Arguments after `--` go to the stress test unchanged (e.g. `-- --format mp3`).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.demo.random_snac import write_random_snac
from bench.paced_backend import paced_backend

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "?"
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else "?"


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snac", choices=("tiny", "real"), default="tiny")
    parser.add_argument("--rate", type=float, default=82.0, help="tokens/s per stream")
    parser.add_argument("--seconds", type=float, default=6.0, help="audio per request")
    parser.add_argument("--levels", default="1,2,4,8,16")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per level")
    parser.add_argument("--slo", default="ttfa=1s,rtf=1.0,stall=0")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--save", type=Path, help="results.json and plots go here")
    parser.add_argument(
        "--stop-at-break",
        action="store_true",
        help="stop at the first level that misses the SLO (default: all levels)",
    )
    args, passthrough = parser.parse_known_args()
    passthrough = [a for a in passthrough if a != "--"]

    work = Path(tempfile.mkdtemp(prefix="gateway_sweep_"))
    snac = write_random_snac(work / "snac", tiny=args.snac == "tiny", seed=0)
    backend = paced_backend(args.rate, args.seconds)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TTS_API": backend.url,
        "MODEL_NAME": backend.model,
        "SNAC_MODEL": str(snac),
        "SNAC_NOISE": "false",
        "DEVICE": "cpu",
        "TORCH_THREADS": "1",
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "DATA_DIR": str(work / "data"),
        "LOG_LEVEL": "warning",
    }
    # cwd outside the repository: the gateway must not pick up a developer's .env.
    gateway = subprocess.Popen([sys.executable, "-m", "app"], env=env, cwd=work)
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        "-m",
        "stress_test",
        "sweep",
        "--url",
        url,
        "--levels",
        args.levels,
        "--duration",
        str(args.duration),
        "--slo",
        args.slo,
        "--warmup",
        str(args.warmup),
        "--wait-ready",
        "120",
        "--no-progress",
    ]
    if not args.stop_at_break:
        command.append("--keep-going")
    if args.save is not None:
        command += ["--save", str(args.save)]
    command += passthrough
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {cpu_model()}")
    print(f"backend: {args.rate:g} tokens/s per stream, {args.seconds:g} s of audio per request")
    print(f"gateway: SNAC {args.snac} (random weights), SNAC_NOISE=false, TORCH_THREADS=1")
    print(f"load average before: {load_average()}")
    print("$ " + shlex.join(command), flush=True)
    started = time.monotonic()
    try:
        done = subprocess.run(command, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    finally:
        gateway.terminate()
        try:
            gateway.wait(30)
        except subprocess.TimeoutExpired:
            gateway.kill()
        backend.stop()
    print(f"load average after: {load_average()}; sweep took {time.monotonic() - started:.0f} s")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
