"""The command line: every option of `python -m stress_test`, its checks, and what a run
asks of the gateway (`RequestSpec`, texts, voices) built from the parsed options."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from stress_test import corpus, ws
from stress_test.exchange import Reference, RequestSpec
from stress_test.slo import Slo, parse_duration

FORMATS = ("pcm", "wav", "mp3", "opus", "aac", "flac")
DEFAULT_SLO = "ttfa=500ms,rtf=1.0,stall=0"


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _extra(text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--extra is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--extra must be a JSON object")
    return value


def _slo(text: str) -> Slo:
    try:
        return Slo.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def _pace(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--levels takes integers: {text!r}") from exc
    if not levels or any(level < 1 for level in levels) or levels != sorted(set(levels)):
        raise argparse.ArgumentTypeError("--levels must be increasing integers >= 1")
    return levels


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    target = common.add_argument_group("gateway")
    target.add_argument("--url", default="http://localhost:8000", help="gateway base URL")
    target.add_argument(
        "--api-key", default=None, help="sent as Authorization: Bearer (empty: none)"
    )
    target.add_argument(
        "--timeout",
        type=_positive(float),
        default=300.0,
        help="seconds one request may take (default 300)",
    )
    target.add_argument(
        "--wait-ready",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to this long for /health to report the models loaded",
    )
    request = common.add_argument_group("requests")
    request.add_argument(
        "--endpoint",
        choices=("speech", "vc", "ws", "deepgram"),
        default="speech",
        help="speech (/v1/audio/speech), vc (/v1/audio/vc), or a WebSocket session: "
        "ws (/v1/audio/speech/stream) or deepgram (/v1/speak)",
    )
    request.add_argument(
        "--words-per-second",
        type=_pace,
        default=40.0,
        help="ws, deepgram: the text is sent word by word at this pace, as an LLM writes it "
        "(default 40, about 55 tokens/s); 0: all at once",
    )
    request.add_argument("--model", default="tts-1")
    request.add_argument(
        "--voice",
        action="append",
        default=None,
        help="voice (repeat or comma-separate for several; default tara)",
    )
    request.add_argument(
        "--format",
        choices=FORMATS,
        default="pcm",
        help="response_format (pcm: TTFA without any container delay)",
    )
    request.add_argument("--stream", type=_bool, default=True, help="HTTP: true (default) or false")
    request.add_argument(
        "--stream-format", choices=("audio", "sse"), default="audio", help="HTTP: audio or sse"
    )
    request.add_argument(
        "--extra",
        type=_extra,
        default={},
        help="JSON object merged into each request (ws: into session.update; deepgram: "
        "query parameters), e.g. '{\"max_tokens\": 600}'",
    )
    request.add_argument("--text-file", type=Path, help="one request text per line")
    request.add_argument(
        "--corpus",
        default="short,medium,long",
        help="kinds of built-in texts to draw from (default short,medium,long)",
    )
    request.add_argument("--reference-audio", type=Path, help="vc: the reference clip")
    request.add_argument("--reference-text", help="vc: the clip's transcript")
    request.add_argument(
        "--pcm-rate",
        type=_positive(int),
        default=24_000,
        help="sample rate of raw pcm responses (default 24000)",
    )
    load = common.add_argument_group("load")
    load.add_argument("--requests", type=_positive(int), default=50, help="burst: how many")
    load.add_argument(
        "--concurrency",
        type=_positive(int),
        default=None,
        help="burst: at most this many at once (default: all); "
        "sweep: the largest level (default 64)",
    )
    load.add_argument("--levels", type=_levels, help="sweep: explicit levels, e.g. 1,2,4,8")
    load.add_argument(
        "--duration",
        type=_positive(float),
        default=30.0,
        help="sweep: seconds per level; poisson: seconds of arrivals (default 30)",
    )
    load.add_argument(
        "--rate",
        type=_positive(float),
        default=1.0,
        help="poisson: arrivals per second (default 1)",
    )
    load.add_argument(
        "--warmup",
        type=int,
        default=3,
        help="requests sent first, one at a time, and left out of the figures (default 3)",
    )
    load.add_argument("--seed", type=int, default=0, help="draws of texts, voices, arrivals")
    load.add_argument(
        "--keep-going", action="store_true", help="sweep: go on past the level where the SLO breaks"
    )
    out = common.add_argument_group("report")
    out.add_argument(
        "--slo",
        type=_slo,
        default=Slo.parse(DEFAULT_SLO),
        help=f"limits a request must meet (default {DEFAULT_SLO})",
    )
    out.add_argument(
        "--stall-threshold",
        type=_duration,
        default=0.01,
        help="player waits shorter than this are not counted as stalls (timer and socket "
        "jitter; a player's output buffer hides them); default 10ms",
    )
    out.add_argument("--save", type=Path, metavar="DIR", help="write results.json and PNG plots")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")

    parser = argparse.ArgumentParser(
        prog="python -m stress_test",
        description="Stress test a streaming TTS gateway over HTTP: first audio, latency, "
        "real-time factor and stalls as a listener would see them.",
    )
    modes = parser.add_subparsers(dest="mode", required=True, metavar="MODE")
    modes.add_parser("burst", parents=[common], help="N requests at once after warm-ups")
    modes.add_parser(
        "sweep", parents=[common], help="closed loop at 1, 2, 4, ... streams until the SLO breaks"
    )
    modes.add_parser("poisson", parents=[common], help="open loop: arrivals at --rate per second")
    saved = modes.add_parser("report", help="print a saved run again, under its SLO or --slo")
    saved.add_argument("results", type=Path, help="a results.json, or the --save folder")
    saved.add_argument("--slo", type=_slo, default=None, help="judge it under this SLO instead")
    return parser


def request_spec(args: argparse.Namespace) -> RequestSpec:
    reference = None
    if args.endpoint == "vc":
        if args.reference_audio is None or not args.reference_text:
            raise ValueError("--endpoint vc needs --reference-audio and --reference-text")
        audio = args.reference_audio.read_bytes()
        reference = Reference(audio, args.reference_audio.name, args.reference_text)
    if args.endpoint == "deepgram":
        if args.format != "pcm":
            raise ValueError(
                "--endpoint deepgram sends bare audio: choose it with --extra, e.g. "
                '\'{"encoding": "mulaw", "sample_rate": 8000}\''
            )
        try:
            ws.deepgram_audio(args.extra)
        except ValueError as exc:
            raise ValueError(f"--extra sample_rate must be an integer: {exc}") from exc
    return RequestSpec(
        endpoint=args.endpoint,
        model=args.model,
        response_format=args.format,
        stream=args.stream,
        stream_format=args.stream_format,
        extra=args.extra,
        reference=reference,
        words_per_second=args.words_per_second,
    )


def texts(args: argparse.Namespace) -> list[corpus.Text]:
    if args.text_file is not None:
        return corpus.from_file(args.text_file)
    return corpus.builtin([kind.strip() for kind in args.corpus.split(",") if kind.strip()])


def voices(args: argparse.Namespace) -> list[str]:
    given = args.voice or ["tara"]
    return [v.strip() for item in given for v in item.split(",") if v.strip()]


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    settings = {key: value for key, value in vars(args).items() if key != "slo"}
    settings["slo"] = args.slo.limits
    if args.api_key:
        settings["api_key"] = "***"
    return settings
