"""Where does the first chunk wait? First-byte and first-audio time per format and per speed.

Against a paced backend (bench/paced_backend.py: vLLM's wire format, a fixed token pace,
82 tokens/s = real time by default) and the real gateway as a subprocess (as in
bench/realtime_pacing.py: `python -m app`, a random-weight SNAC, noise off, one torch
thread), one request at a time, every case in one run, round-robin over `--repeat` rounds
so machine load hits all cases alike. Per case it prints the median and the best of:

- `first_byte_ms`: request to the first body bytes;
- `first_audio_ms`: request to the first bytes that decode to playable samples (pcm: the
  first bytes; containers: PyAV's decode of what had arrived, as `stress_test` counts
  it, so a header or an Ogg page still in flight is not audio yet);
- `first_audio_s`: seconds of audio those first playable bytes hold;

and each case's median first-audio time minus pcm's at speed 1 (`vs_pcm_ms`).

    python bench/first_audio.py
    python bench/first_audio.py --formats pcm,mp3,aac --speeds 0.5,2 --repeat 9
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.realtime_pacing import free_port, running_gateway, wait_http  # noqa: E402
from stress_test.measure import UndecodableAudio, audio_track  # noqa: E402

SAMPLE_RATE = 24_000
FORMATS = "pcm,wav,mp3,opus,aac,flac"
SPEEDS = "0.5,0.75,1.25,1.5,2,4"


@dataclass(frozen=True)
class Case:
    fmt: str
    speed: float

    @property
    def name(self) -> str:
        return f"{self.fmt}@{self.speed:g}"


@dataclass(frozen=True)
class Sample:
    first_byte: float
    first_audio: float
    first_audio_seconds: float


def one_request(client: httpx.Client, url: str, case: Case, seed: int) -> Sample:
    body = {
        "model": "tts-1",
        "voice": "tara",
        "input": f"First audio {seed}.",
        "response_format": case.fmt,
        "speed": case.speed,
    }
    arrivals: list[tuple[float, int]] = []
    data = bytearray()
    started = time.perf_counter()
    with client.stream("POST", f"{url}/v1/audio/speech", json=body) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            data += chunk
            arrivals.append((time.perf_counter() - started, len(data)))
    track = audio_track(bytes(data), case.fmt, SAMPLE_RATE)
    for arrived, received in arrivals:
        samples = track.samples_at(received)
        if samples:
            return Sample(arrivals[0][0], arrived, samples / track.rate)
    raise UndecodableAudio(f"{case.name}: no playable audio before the end of the body")


def run_cases(url: str, cases: list[Case], repeat: int) -> dict[Case, list[Sample]]:
    samples: dict[Case, list[Sample]] = {case: [] for case in cases}
    with httpx.Client(timeout=60) as client:
        for case in cases:  # warm-up: encoders, filter graphs, first connections
            one_request(client, url, case, 0)
        for round_ in range(repeat):
            for case in cases:
                samples[case].append(one_request(client, url, case, round_ + 1))
    return samples


def summarize(samples: dict[Case, list[Sample]]) -> list[dict[str, object]]:
    def median_ms(values: list[float]) -> float:
        return round(statistics.median(values) * 1000, 1)

    reference = next((s for c, s in samples.items() if c == Case("pcm", 1.0)), None)
    base = median_ms([s.first_audio for s in reference]) if reference else float("nan")
    rows: list[dict[str, object]] = []
    for case, runs in samples.items():
        first_audio = median_ms([s.first_audio for s in runs])
        rows.append(
            {
                "case": case.name,
                "first_byte_ms": median_ms([s.first_byte for s in runs]),
                "first_byte_best_ms": round(min(s.first_byte for s in runs) * 1000, 1),
                "first_audio_ms": first_audio,
                "first_audio_best_ms": round(min(s.first_audio for s in runs) * 1000, 1),
                "first_audio_s": round(statistics.median(s.first_audio_seconds for s in runs), 3),
                "vs_pcm_ms": round(first_audio - base, 1),
            }
        )
    return rows


def stop(process: subprocess.Popen[bytes], how: signal.Signals) -> None:
    process.send_signal(how)
    process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--formats", default=FORMATS, help="formats at speed 1")
    parser.add_argument("--speeds", default=SPEEDS, help="speeds other than 1, for --speed-formats")
    parser.add_argument("--speed-formats", default="pcm,mp3,aac")
    parser.add_argument("--rate", type=float, default=82.0, help="backend tokens/s per stream")
    parser.add_argument("--seconds", type=float, default=2.0, help="audio per request")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the gateway")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()

    from app.demo.random_snac import write_random_snac

    cases = [Case(fmt, 1.0) for fmt in args.formats.split(",")]
    cases += [
        Case(fmt, float(speed))
        for fmt in args.speed_formats.split(",")
        for speed in args.speeds.split(",")
    ]
    snac_dir = write_random_snac(Path(tempfile.mkdtemp()) / "snac", tiny=True)
    port = free_port()
    print(
        f"# {platform.node()} {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"backend {args.rate:g} tokens/s, {args.seconds:g} s per request, "
        f"{args.repeat} rounds, load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    with contextlib.ExitStack() as processes:
        backend = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "paced_backend.py"), "--port", str(port),
             "--rate", str(args.rate), "--seconds", str(args.seconds)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        processes.callback(stop, backend, signal.SIGTERM)
        wait_http(f"http://127.0.0.1:{port}/v1/models", 30)
        env = {"MODEL_NAME": "tinyorpheus"} | dict(item.split("=", 1) for item in args.env)
        gateway = processes.enter_context(
            running_gateway(f"http://127.0.0.1:{port}", snac_dir, env)
        )
        rows = summarize(run_cases(gateway.url, cases, args.repeat))
    for row in rows:
        print(json.dumps(row), flush=True)
    print(f"# load {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
