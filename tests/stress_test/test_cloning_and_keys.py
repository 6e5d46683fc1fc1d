"""The `vc` endpoint (a reference clip and its transcript on every request) and a gateway that
wants an API key (over HTTP and both WebSocket protocols), through the CLI as a user would
run them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import gateway_settings
from tests.stress_test.test_cli import saved, stress
from tests.support.clips import chirp, encode_clip
from tests.support.gateway import running_gateway
from tests.support.vllm_server import VLLMServer

KEY = "stress-key"
FRAMES = 10


def refused(count: int) -> dict[str, object]:
    """The summary's error row for requests the gateway refused for want of a key."""
    return {
        "cause": "missing_api_key",
        "status": 401,
        "in_band": False,
        "count": count,
        "close_code": None,
    }


@pytest.fixture(scope="module")
def keyed_gateway(tiny_snac_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # The backend counts a prompt character as a token: a reference's codes are many.
    with VLLMServer(frames=FRAMES, max_model_len=1_000_000) as backend:
        settings = gateway_settings(
            backend.url,
            tiny_snac_dir,
            api_keys=[KEY],
            data_dir=tmp_path_factory.mktemp("stress_vc"),
        )
        with running_gateway(settings) as url:
            yield url


def test_vc_requests_carry_the_reference_and_report_its_audio(
    keyed_gateway: str, tmp_path: Path
) -> None:
    clip = tmp_path / "me.wav"
    clip.write_bytes(encode_clip(chirp(2.0, 22_050), 22_050, "wav"))
    out = tmp_path / "out"
    done = stress(
        "burst",
        "--url",
        keyed_gateway,
        "--api-key",
        KEY,
        "--endpoint",
        "vc",
        "--reference-audio",
        str(clip),
        "--reference-text",
        "What I say in the clip.",
        "--requests",
        "2",
        "--warmup",
        "0",
        "--corpus",
        "short",
        "--save",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    document = saved(out)
    assert document["settings"]["api_key"] == "***"
    assert document["gateway_models"]["status"] == 200
    assert [r["cause"] for r in document["requests"]] == [None, None]
    assert {r["audio_seconds"] for r in document["requests"]} == {FRAMES * 2048 / 24_000}


def test_a_missing_key_is_counted_as_the_gateways_refusal(
    keyed_gateway: str, tmp_path: Path
) -> None:
    done = stress(
        "burst", "--url", keyed_gateway, "--requests", "2", "--warmup", "0", "--save", str(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    document = saved(tmp_path)
    assert document["gateway_models"]["status"] == 401
    errors = document["summary"]["errors"]
    assert errors == [refused(2)]
    assert document["summary"]["goodput"] == 0.0
    assert "missing_api_key" in done.stdout


@pytest.mark.parametrize("endpoint", ["ws", "deepgram"])
def test_websocket_sessions_carry_the_key_as_their_protocol_wants(
    keyed_gateway: str, tmp_path: Path, endpoint: str
) -> None:
    """Bearer for the native protocol, Token for Deepgram's; without it the handshake is
    refused, and counted under the gateway's cause."""
    common = ["burst", "--url", keyed_gateway, "--endpoint", endpoint, "--warmup", "0"]
    keyed = stress(*common, "--requests", "2", "--api-key", KEY, "--save", str(tmp_path / "k"))
    bare = stress(*common, "--requests", "1", "--save", str(tmp_path / "none"))
    assert keyed.returncode == 0 and bare.returncode == 0, keyed.stderr + bare.stderr
    assert [(r["cause"], r["status"]) for r in saved(tmp_path / "k")["requests"]] == [
        (None, 101),
        (None, 101),
    ]
    errors = saved(tmp_path / "none")["summary"]["errors"]
    assert errors == [refused(1)]
