"""`python -m stress_test` as a user runs it, against the real gateway: the report, the
saved JSON and plots, and a sweep that stops where the SLO breaks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import matplotlib.image
import pytest

from stress_test.cli import main
from stress_test.options import build_parser
from tests.support.vllm_server import Script, VLLMServer

ROOT = Path(__file__).resolve().parents[2]
BACKEND_SLOTS = 2
QUEUED_FIRST_TOKEN = 2.5
"""Seconds a request waits for its first token when the backend's slots are all taken."""


def stress(
    *args: str, timeout: float = 120, progress: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "160"}
    quiet = [] if progress else ["--no-progress"]
    return subprocess.run(
        [sys.executable, "-m", "stress_test", *args, *quiet],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
        check=False,
    )


def saved(directory: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((directory / "results.json").read_text("utf-8"))
    return document


def assert_png(path: Path) -> None:
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_burst_reports_and_saves_every_request(
    gateway: str, vllm: VLLMServer, tmp_path: Path
) -> None:
    vllm.default_script = lambda body: Script(frames=8, delay=0.002)
    args = [
        "burst",
        "--url",
        gateway,
        "--requests",
        "4",
        "--concurrency",
        "2",
        "--warmup",
        "1",
        "--voice",
        "tara,leo",
        "--extra",
        '{"max_tokens": 600}',
        # One sentence each: a longer text would be spoken as several segments.
        "--corpus",
        "short",
        "--save",
        str(tmp_path),
    ]
    done = stress(*args, progress=True)
    assert done.returncode == 0, done.stderr
    assert "burst" in done.stderr  # the progress bar's phases
    out = done.stdout
    assert "=== SLO LATENCY REPORT ===" in out
    assert "=== AUDIO & REAL-TIME FACTOR (RTF) REPORT ===" in out
    assert "Total Requests: 4" in out and "goodput:" in out and "audio s per wall s" in out
    assert "sentence TTFA" not in out  # WebSocket sessions only
    document = saved(tmp_path)
    assert document["command"] == ["python", "-m", "stress_test", *args]
    models = document["gateway_models"]
    assert models["status"] == 200
    assert "tts-1" in [m["id"] for m in models["body"]["data"]]
    phases = [r["phase"] for r in document["requests"]]
    assert phases == ["warmup"] + ["measure"] * 4
    assert {r["voice"] for r in document["requests"]} <= {"tara", "leo"}
    assert document["summary"]["requests"] == 4 and document["summary"]["succeeded"] == 4
    assert document["summary"]["metrics"]["audio_seconds"]["min"] == pytest.approx(8 * 2048 / 24000)
    # The extra fields reached the gateway, which passed max_tokens to the backend.
    assert all(r.body["max_tokens"] == 600 for r in vllm.completions)
    for name in ("ttfa_cdf.png", "rtf_cdf.png", "timelines.png"):
        assert_png(tmp_path / name)


def test_sweep_stops_at_the_concurrency_where_the_slo_breaks(
    gateway: str, vllm: VLLMServer, tmp_path: Path
) -> None:
    """A backend with two slots: a third concurrent request waits for its first token, so
    TTFA breaks at 4 streams and never at 1 or 2, whatever the machine's speed."""

    def saturating(body: dict[str, Any]) -> Script:
        busy = sum(1 for r in vllm.completions if not r.completed and r.disconnected_at is None)
        wait = QUEUED_FIRST_TOKEN if busy > BACKEND_SLOTS else 0.0
        return Script(frames=12, delay=0.005, first_delay=wait)

    vllm.default_script = saturating
    done = stress(
        "sweep",
        "--url",
        gateway,
        "--levels",
        "1,2,4,8",
        "--duration",
        "0.5",
        "--warmup",
        "0",
        "--slo",
        "ttfa=1.5s",
        "--save",
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    expected = "capacity: 2 stream(s) meet the SLO (ttfa ≤ 1500 ms); it breaks at 4"
    assert expected in done.stdout, done.stdout[-4000:]
    sweep = saved(tmp_path)["sweep"]
    assert (sweep["capacity"], sweep["breaks_at"]) == (2, 4)
    levels = sweep["levels"]
    assert [level["concurrency"] for level in levels] == [1, 2, 4]
    assert [level["summary"]["meets_slo"] for level in levels] == [True, True, False]
    assert levels[2]["summary"]["slo_p99"]["ttfa"] >= QUEUED_FIRST_TOKEN
    for name in ("ttfa_cdf.png", "rtf_cdf.png", "timelines.png", "sweep.png"):
        assert_png(tmp_path / name)


def test_a_saved_sweep_is_judged_again_under_another_slo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    levels = [(1, 0.2), (2, 0.4), (4, 0.9), (8, 1.6)]
    requests = [
        {
            "index": i,
            "phase": f"c={c}",
            "text_kind": "short",
            "chars": 9,
            "voice": "tara",
            "sent_at": float(i),
            "status": 200,
            "cause": None,
            "message": None,
            "in_band": False,
            "latency": 2.0,
            "ttfa": ttfa,
            "audio_seconds": 4.0,
            "rtf": 0.5,
            "stall_seconds": 0.0,
            "stall_count": 0,
            "largest_gap": 0.1,
            "bytes": 192000,
            "timeline": [[ttfa, 4.0]],
            "stalls": [],
        }
        for i, (c, ttfa) in enumerate(levels)
    ]
    document = {
        "mode": "sweep",
        "settings": {"slo": {"ttfa": 0.5}},
        "sweep": {"levels": [{"concurrency": c, "duration": 5.0} for c, _ in levels]},
        "requests": requests,
    }
    (tmp_path / "results.json").write_text(json.dumps(document))
    assert main(["report", str(tmp_path)]) == 0
    assert "capacity: 2 stream(s) meet the SLO (ttfa ≤ 500 ms); it breaks at 4" in (
        capsys.readouterr().out
    )
    assert main(["report", str(tmp_path / "results.json"), "--slo", "ttfa=1s"]) == 0
    assert "capacity: 4 stream(s) meet the SLO (ttfa ≤ 1000 ms); it breaks at 8" in (
        capsys.readouterr().out
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--slo", "ttfa=fast"], "bad SLO value for ttfa"),
        (["--slo", "speed=1"], "SLO items are key=value"),
        (["--extra", "[1]"], "--extra must be a JSON object"),
        (["--stream", "maybe"], "expected true or false"),
        (["--levels", "4,2"], "--levels must be increasing"),
        (["--endpoint", "vc"], "--endpoint vc needs --reference-audio"),
        (["--corpus", "huge"], "corpus kinds must be among"),
        (["--words-per-second", "-1"], "must be >= 0"),
        (["--endpoint", "deepgram", "--format", "mp3"], "--endpoint deepgram sends bare audio"),
        (["--endpoint", "deepgram", "--extra", '{"sample_rate": "x"}'], "must be an integer"),
    ],
)
def test_bad_options_are_refused_with_a_reason(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["burst", "--url", "http://127.0.0.1:9", *args])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_every_mode_takes_every_option() -> None:
    parser = build_parser()
    for mode in ("burst", "sweep", "poisson"):
        args = parser.parse_args([mode, "--rate", "2", "--duration", "5", "--requests", "3"])
        assert (args.mode, args.rate, args.duration, args.requests) == (mode, 2.0, 5.0, 3)
        assert args.slo.limits == {"ttfa": 0.5, "rtf": 1.0, "stall": 0.0}
        assert (args.endpoint, args.words_per_second) == ("speech", 40.0)
