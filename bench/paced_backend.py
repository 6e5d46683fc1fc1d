"""A vLLM-compatible completions server that streams Orpheus audio tokens at a fixed pace.

At capacity vLLM gives each stream about real-time pace (82 tokens/s: 7 tokens per
2048-sample frame at 24 kHz), one token per SSE event; this server does the same for every
request, on a fixed schedule (no drift), with vLLM's wire format (it is the test suite's
scriptable server, tests/support/vllm_server.py). Every request gets `--seconds` of audio.

    python bench/paced_backend.py --rate 82 --seconds 6 --port 8001
    TTS_API=http://127.0.0.1:8001 MODEL_NAME=tinyorpheus python -m app
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.vllm_server import Script, VLLMServer

FRAME_SECONDS = 2048 / 24_000


def frames_for(seconds: float) -> int:
    return max(1, math.ceil(seconds / FRAME_SECONDS))


def paced_backend(rate: float, seconds: float, port: int = 0) -> VLLMServer:
    """A started server whose every stream carries `seconds` of audio at `rate` tokens/s."""
    frames = frames_for(seconds)
    server = VLLMServer(frames=frames, max_model_len=1_000_000)

    def script(body: dict[str, Any]) -> Script:
        return Script(frames=frames, pace=rate)

    server.default_script = script
    return server.start(port=port)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=82.0, help="tokens per second per stream")
    parser.add_argument("--seconds", type=float, default=6.0, help="audio per request")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    server = paced_backend(args.rate, args.seconds, args.port)
    print(f"paced backend on {server.url}: {args.rate:g} tokens/s, {args.seconds:g} s each")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
