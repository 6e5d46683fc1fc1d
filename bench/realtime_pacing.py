"""Is streaming smooth when tokens arrive at real time, and what does the event loop cost?

Three processes, as in production: a paced vLLM-format backend (this script with
``--serve-backend``: one token per SSE event, token i of a stream sent at
``t0 + i / rate``, so the pace never drifts), the real gateway (``python -m app``,
a random-weight SNAC, noise off), and this script as the client, running N
concurrent ``/v1/audio/speech`` streams of ``--frames`` frames each.

Per setting it prints:
- ttfa p50/p99: request to the first audio bytes
- stall p50/p99: total time a player that starts at the first byte waits with an
  empty buffer, per stream; ``stalled``: streams with any stall over 1 ms;
  ``stall_early_share`` / ``stall_end_share``: the parts of all streams' stall that fell
  within the first second of playback (the start-up) and within its last second (the end)
- chunks: mean audio chunks per stream; the first three chunk sizes in frames (median)
- loop / codec / other CPU ms per delivered audio-second: the gateway's threads,
  read from /proc (the main thread runs the event loop; the codec worker names itself
  ``snac-codec``; "other" is the encoder/upload threads and torch's)
- the loop's user and kernel shares of that, and its read syscalls and voluntary context
  switches (wake-ups) per frame delivered, from /proc/<pid>/task/<pid>/{stat,io,status}

    python bench/realtime_pacing.py --streams 1,16,64 --rates 82,200
    python bench/realtime_pacing.py --streams 64 --rates 82 --formats pcm,mp3,opus,aac
    python bench/realtime_pacing.py --streams 1,16 --schedule doubling,buffer
    python bench/realtime_pacing.py --streams 64 --rates 82 --gateway-root ../before --alternate 6

``--alternate K`` runs the variants in turn, K rounds (order reversed every other round),
and ends with each variant's mean loop CPU and its per-round ratio to the first variant:
on a shared VM the loop's cost drifts by more than the change being measured within the
minutes one variant after the other takes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAMPLE_RATE = 24_000
FRAME_SAMPLES = 2048
FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE
AUDIO_BASE = 128266
END_OF_SPEECH = 128258
MODEL = "paced"
T = TypeVar("T")


# --- the paced backend ---------------------------------------------------------------


async def _serve_backend(port: int, rate: float, frames: int, per_event: int = 1) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, _path, _ = lines[0].split(" ", 2)
                headers = dict(
                    (k.strip().lower(), v.strip())
                    for k, v in (x.split(":", 1) for x in lines[1:] if x)
                )
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if method == "GET":
                    payload = json.dumps({"object": "list", "data": [{"id": MODEL}]}).encode()
                    writer.write(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                        + f"content-length: {len(payload)}\r\n\r\n".encode()
                        + payload
                    )
                    await writer.drain()
                    continue
                await _stream(writer, json.loads(body), rate, frames, per_event)
                if headers.get("connection", "").lower() == "close":
                    # As uvicorn (vLLM's server) does: the FIN is what tells a reader
                    # holding a receive low-water mark that the stream's last bytes are in.
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


async def _stream(
    writer: asyncio.StreamWriter, body: dict[str, object], rate: float, n: int, per_event: int
) -> None:
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
    )
    rng = random.Random(str(body.get("prompt")))
    tokens = [AUDIO_BASE + s * 4096 + rng.randrange(4096) for _ in range(n) for s in range(7)]
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    # As vLLM: an id of its own a completion (shared/reference/vllm-completions-stream.txt),
    # which the gateway's per-stream event template must learn anew each time.
    base = {"id": f"cmpl-{uuid.uuid4().hex[:16]}", "object": "text_completion",
            "created": int(time.time()), "model": MODEL}  # fmt: skip

    def event(data: str) -> bytes:
        raw = f"data: {data}\n\n".encode()
        return f"{len(raw):x}\r\n".encode() + raw + b"\r\n"

    for i in range(0, len(tokens), per_event):
        group = tokens[i : i + per_event]
        # An event leaves when its last token is due: the pace per token is unchanged.
        delay = t0 + (i + len(group)) / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        text = "".join(f"<custom_token_{token - 128256}>" for token in group)
        choice = {"index": 0, "text": text, "logprobs": None,
                  "finish_reason": None, "stop_reason": None}  # fmt: skip
        writer.write(event(json.dumps(base | {"choices": [choice]}, separators=(",", ":"))))
        await writer.drain()
    done = {"index": 0, "text": "", "logprobs": None, "finish_reason": "stop",
            "stop_reason": END_OF_SPEECH}  # fmt: skip
    usage = {"prompt_tokens": len(str(body.get("prompt"))), "completion_tokens": len(tokens) + 1}
    writer.write(event(json.dumps(base | {"choices": [done]}, separators=(",", ":"))))
    writer.write(event(json.dumps(base | {"choices": [], "usage": usage}, separators=(",", ":"))))
    writer.write(event("[DONE]") + b"0\r\n\r\n")
    await writer.drain()


# --- processes -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    url: str


def start_gateway(
    backend: str, snac_dir: Path, env_extra: dict[str, str], root: Path = ROOT
) -> Gateway:
    """``root``: the checkout whose gateway runs (another one compares versions in one run)."""
    port = free_port()
    env = (
        os.environ
        | {
            "TTS_API": backend,
            "MODEL_NAME": MODEL,
            "SNAC_MODEL": str(snac_dir),
            "DEVICE": "cpu",
            "SNAC_NOISE": "false",
            "TORCH_THREADS": "1",
            "MAX_CONCURRENT_STREAMS": "1024",
            "LOG_LEVEL": "warning",
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "PYTHONPATH": str(root),
        }
        | env_extra
    )
    process = subprocess.Popen([sys.executable, "-m", "app"], env=env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/ready")
    return Gateway(process, url)


@contextmanager
def paced_backend(rate: float, frames: int | None = None, per_event: int = 1) -> Iterator[str]:
    """This script with ``--serve-backend``, streaming ``frames`` at ``rate``, ``per_event``
    tokens to an SSE event; its URL."""
    port = free_port()
    command = [sys.executable, __file__, "--serve-backend", str(port), "--rate", str(rate)]
    command += ["--tokens-per-event", str(per_event)]
    backend = subprocess.Popen(command + (["--frames", str(frames)] if frames else []))
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models", 20)
        yield f"http://127.0.0.1:{port}"
    finally:
        backend.terminate()
        backend.wait(10)


@contextmanager
def paced_gateway(
    rate: float, snac_dir: Path, env_extra: dict[str, str] | None = None
) -> Iterator[Gateway]:
    """The paced backend and a gateway fed by it."""
    with paced_backend(rate) as url, running_gateway(url, snac_dir, env_extra or {}) as gateway:
        yield gateway


@contextmanager
def running_gateway(
    backend: str, snac_dir: Path, env_extra: dict[str, str], root: Path = ROOT
) -> Iterator[Gateway]:
    """`start_gateway`, stopped (SIGINT, as an operator would) when the block ends."""
    gateway = start_gateway(backend, snac_dir, env_extra, root)
    try:
        yield gateway
    finally:
        gateway.process.send_signal(signal.SIGINT)
        gateway.process.wait(30)


def alternating(variants: list[T], rounds: int) -> Iterator[tuple[int, T]]:
    """(round, variant) for ``rounds`` rounds of every variant, the order reversed every
    other round: on a shared VM the host's speed drifts within minutes."""
    for k in range(max(1, rounds)):
        for variant in variants if k % 2 == 0 else variants[::-1]:
            yield k, variant


def variant_name(root: Path, default: str) -> str:
    return default if root == ROOT else f"root:{root.name}"


def random_snac(codec: str) -> Path:
    """A random-weight SNAC in a fresh temporary folder: ``tiny``, or the ``real`` one's shape."""
    from app.demo.random_snac import write_random_snac

    return write_random_snac(Path(tempfile.mkdtemp()) / "snac", tiny=codec == "tiny")


def add_rounds_options(parser: argparse.ArgumentParser) -> None:
    """The options of a bench that times ``--rounds`` of requests against `paced_gateway`
    (``--rate``) and `random_snac` (``--codec``)."""
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--rate", type=float, default=82.0)
    parser.add_argument("--codec", choices=["tiny", "real"], default="tiny")


def add_gateway_root_option(parser: argparse.ArgumentParser) -> None:
    """``--gateway-root``: checkouts whose gateways run too, to compare versions in one run."""
    parser.add_argument(
        "--gateway-root",
        action="append",
        type=Path,
        default=[],
        help="also run the gateway of this checkout (e.g. a worktree of an older commit)",
    )


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds by thread kind: the main thread (event loop), the codec worker, the rest."""
    out = {"loop": 0.0, "codec": 0.0, "other": 0.0}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            seconds = sum(_cpu_seconds(Path(f"/proc/{pid}/task/{tid}")))
        except OSError:
            continue  # the thread ended meanwhile
        kind = "loop" if int(tid) == pid else "codec" if name == "snac-codec" else "other"
        out[kind] += seconds
    return out


def _cpu_seconds(task: Path) -> tuple[float, float]:
    """A thread's user and kernel CPU seconds (``utime``, ``stime`` of its stat)."""
    fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def loop_counters(pid: int) -> dict[str, float]:
    """The event loop thread's user and kernel CPU seconds, read syscalls and voluntary
    context switches (its wake-ups); empty where /proc does not show them."""
    task = Path(f"/proc/{pid}/task/{pid}")
    try:
        user, kernel = _cpu_seconds(task)
        io = dict(line.split(": ") for line in (task / "io").read_text().splitlines())
        status = dict(
            line.split(":\t")
            for line in (task / "status").read_text().splitlines()
            if ":\t" in line
        )
    except (OSError, ValueError):
        return {}
    return {
        "user": user,
        "sys": kernel,
        "reads": float(io["syscr"]),
        "switches": float(status["voluntary_ctxt_switches"]),
    }


# --- the client ------------------------------------------------------------------------


@dataclass
class StreamResult:
    ttfa: float = float("nan")
    stall: float = 0.0
    audio: float = 0.0
    stalls: list[tuple[float, float]] = field(default_factory=list)
    """Each wait: (seconds of audio played before it ran dry, seconds waited)."""
    chunks: list[float] = field(default_factory=list)
    """Seconds of audio per received chunk (pcm: exact; other formats: not used)."""
    error: str | None = None


async def one_stream(client: httpx.AsyncClient, url: str, fmt: str, seed: int) -> StreamResult:
    result = StreamResult()
    body = {"model": "tts-1", "voice": "tara", "input": f"Stream {seed}.", "response_format": fmt}
    started = time.perf_counter()
    play_end = playing_from = 0.0
    received = 0
    try:
        async with client.stream("POST", f"{url}/v1/audio/speech", json=body) as response:
            if response.status_code != 200:
                result.error = f"HTTP {response.status_code}"
                return result
            async for data in response.aiter_raw():
                now = time.perf_counter()
                received += len(data)
                seconds = len(data) / (2 * SAMPLE_RATE) if fmt == "pcm" else 0.0
                result.chunks.append(seconds)
                if result.ttfa != result.ttfa:  # the first audio bytes
                    result.ttfa = now - started
                    play_end = now + seconds
                    playing_from = now
                else:
                    if now > play_end:
                        played = play_end - playing_from - result.stall  # when it ran dry
                        result.stalls.append((played, now - play_end))
                        result.stall += now - play_end
                        play_end = now
                    play_end += seconds
    except httpx.HTTPError as exc:
        result.error = type(exc).__name__
    result.audio = received / (2 * SAMPLE_RATE) if fmt == "pcm" else 0.0
    return result


async def run_streams(url: str, streams: int, fmt: str) -> list[StreamResult]:
    limits = httpx.Limits(max_connections=streams + 8, max_keepalive_connections=streams + 8)
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=limits) as client:

        async def staggered(i: int) -> StreamResult:
            # Requests do not arrive in lockstep: spread the starts over one frame.
            await asyncio.sleep(random.Random(i).uniform(0, FRAME_SECONDS))
            return await one_stream(client, url, fmt, i)

        return await asyncio.gather(*(staggered(i) for i in range(streams)))


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def measure(gateway: Gateway, streams: int, fmt: str, frames: int) -> dict[str, object]:
    asyncio.run(run_streams(gateway.url, min(streams, 4), fmt))  # warm-up
    before = thread_cpu(gateway.process.pid)
    loop_before = loop_counters(gateway.process.pid)
    results = asyncio.run(run_streams(gateway.url, streams, fmt))
    after = thread_cpu(gateway.process.pid)
    loop_after = loop_counters(gateway.process.pid)
    ok = [r for r in results if r.error is None]
    expected = frames * FRAME_SECONDS
    audio = len(ok) * expected  # every format: the duration the gateway delivered
    if fmt == "pcm":
        audio = sum(r.audio for r in ok)
    cpu = {k: (after[k] - before[k]) * 1000 / audio if audio else float("nan") for k in after}
    sizes = [[c / FRAME_SECONDS for c in r.chunks[:3]] for r in ok if len(r.chunks) >= 3]
    total_stall = sum(r.stall for r in ok)
    waits = [wait for r in ok for wait in r.stalls]
    return {
        "streams": streams,
        "format": fmt,
        "errors": len(results) - len(ok),
        "ttfa_p50_ms": pct([r.ttfa * 1000 for r in ok], 50),
        "ttfa_p99_ms": pct([r.ttfa * 1000 for r in ok], 99),
        "stall_p50_ms": pct([r.stall * 1000 for r in ok], 50),
        "stall_p99_ms": pct([r.stall * 1000 for r in ok], 99),
        "stalled": sum(r.stall > 0.001 for r in ok),
        "stall_early_share": sum(w for p, w in waits if p < 1.0) / total_stall if waits else 0.0,
        "stall_end_share": sum(w for p, w in waits if p > expected - 1.0) / total_stall
        if waits
        else 0.0,
        "chunks": statistics.mean(len(r.chunks) for r in ok) if ok else float("nan"),
        "first_chunks": [round(statistics.median(s[i] for s in sizes), 1) for i in range(3)]
        if sizes and fmt == "pcm"
        else [],
        "audio_ok": all(abs(r.audio - expected) < 1e-6 for r in ok) if fmt == "pcm" else None,
        "loop_ms_per_audio_s": cpu["loop"],
        **_loop_split(loop_before, loop_after, audio, len(ok) * frames),
        "codec_ms_per_audio_s": cpu["codec"],
        "other_ms_per_audio_s": cpu["other"],
    }


def _loop_split(
    before: dict[str, float], after: dict[str, float], audio: float, frames: int
) -> dict[str, float]:
    """The loop's CPU as user and kernel ms per audio-second, and its reads and wake-ups
    per frame delivered: which of them a change moved."""
    if not before or not after or not audio or not frames:
        return {}
    delta = {k: after[k] - before[k] for k in before}
    return {
        "loop_user_ms_per_audio_s": delta["user"] * 1000 / audio,
        "loop_sys_ms_per_audio_s": delta["sys"] * 1000 / audio,
        "loop_reads_per_frame": delta["reads"] / frames,
        "loop_wakeups_per_frame": delta["switches"] / frames,
    }


def summarize_rounds(
    rows: list[dict[str, object]],
    setting: tuple[str, ...],
    value: str,
    unit: str,
    variant: str = "schedule",
) -> None:
    """Per setting (the ``setting`` fields of a row): each variant's mean ``value``, and
    per round its ratio to the first variant's."""
    settings: dict[tuple[object, ...], dict[object, dict[object, float]]] = {}
    for row in rows:
        key = tuple(row[name] for name in setting)
        figure = row[value]
        assert isinstance(figure, (int, float))
        settings.setdefault(key, {}).setdefault(row[variant], {})[row["round"]] = figure
    for key, by_variant in settings.items():
        first = next(iter(by_variant.values()))
        label = " ".join(f"{name}={v}" for name, v in zip(setting, key, strict=True))
        for name, figures in by_variant.items():
            ratios = [figures[k] / first[k] for k in figures if first.get(k)]
            mean = statistics.mean(figures.values())
            rounds = " ".join(f"{v:.2f}" for v in figures.values())
            print(
                f"# {label} {name}: {value} mean {mean:.2f} {unit}; per round {rounds}; ratio"
                f" to the first {' '.join(f'{r:.3f}' for r in ratios)}"
                f" (mean {statistics.mean(ratios):.3f})",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--streams", default="1,16,64")
    parser.add_argument("--rates", default="82,200", help="tokens per second per stream")
    parser.add_argument("--formats", default="pcm")
    parser.add_argument("--frames", type=int, default=60, help="frames per stream (60 = 5.1 s)")
    parser.add_argument("--codec", choices=["tiny", "real"], default="tiny")
    parser.add_argument(
        "--tokens-per-event",
        type=int,
        default=1,
        help="tokens the backend puts in one SSE event (vLLM: 1), at the same pace per token",
    )
    parser.add_argument("--schedule", default="", help="CHUNK_SCHEDULE values to compare")
    add_gateway_root_option(parser)
    parser.add_argument(
        "--env", action="append", default=[], help="extra KEY=VALUE for the gateway"
    )
    parser.add_argument(
        "--alternate", type=int, default=0, metavar="K", help="K rounds alternating the variants"
    )
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--serve-backend", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=82.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_backend:
        asyncio.run(
            _serve_backend(args.serve_backend, args.rate, args.frames, args.tokens_per_event)
        )
        return

    snac_dir = random_snac(args.codec)
    extra = dict(item.split("=", 1) for item in args.env)
    machine = f"{platform.node()} {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print(f"# {machine}, codec {args.codec}, {args.frames} frames/stream, "
          f"load {os.getloadavg()[0]:.2f}")  # fmt: skip
    rows = []
    schedules = [s for s in args.schedule.split(",") if s] or [""]
    for rate in [float(r) for r in args.rates.split(",")]:
        with paced_backend(rate, args.frames, args.tokens_per_event) as backend:
            variants = [(ROOT, schedule) for schedule in schedules]
            variants += [(root.resolve(), "") for root in args.gateway_root]
            for k, (root, schedule) in alternating(variants, args.alternate):
                env = extra | ({"CHUNK_SCHEDULE": schedule} if schedule else {})
                name = variant_name(root, schedule or "default")
                with running_gateway(backend, snac_dir, env, root) as gateway:
                    for fmt in args.formats.split(","):
                        for n in [int(s) for s in args.streams.split(",")]:
                            row = {"rate": rate, "schedule": name, "round": k}
                            row |= measure(gateway, n, fmt, args.frames)
                            rows.append(row)
                            print(json.dumps(row), flush=True)
    if args.alternate:
        summarize_rounds(rows, ("rate", "format", "streams"), "loop_ms_per_audio_s", "ms/audio-s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
