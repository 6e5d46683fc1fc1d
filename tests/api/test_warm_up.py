"""A real gateway with TORCH_COMPILE=true: `/ready` answers 503 while the decoder warms up
and 200 after it; speech asked for meanwhile waits for the decoder, not fails."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from app.audio.pcm import SAMPLES_PER_FRAME
from tests.api.conftest import gateway_settings
from tests.support.gateway import running_gateway
from tests.support.vllm_server import VLLMServer

SPEECH = {"model": "tts-1", "voice": "tara", "input": "Hello.", "response_format": "pcm"}
FRAMES = 12  # the test server's default script


@pytest.mark.timeout(1200)
def test_ready_only_after_the_warm_up(vllm: VLLMServer, tiny_snac_dir: Path) -> None:
    settings = gateway_settings(
        vllm.url, tiny_snac_dir, torch_compile=True, cuda_graph_batch="0.5,1.0"
    )
    with running_gateway(settings) as url:
        ready = httpx.get(f"{url}/ready", timeout=5)
        # Compiling takes seconds even from inductor's on-disk cache.
        assert ready.status_code == 503
        assert ready.json()["codec"] == "warming_up"
        assert httpx.get(f"{url}/health", timeout=5).json()["status"] == "ok"
        speech = httpx.post(f"{url}/v1/audio/speech", json=SPEECH, timeout=900)
        assert speech.status_code == 200
        assert len(speech.content) == FRAMES * SAMPLES_PER_FRAME * 2  # 16-bit PCM
        deadline = time.monotonic() + 900
        while (ready := httpx.get(f"{url}/ready", timeout=5)).status_code != 200:
            assert ready.json()["codec"] == "warming_up"
            assert time.monotonic() < deadline, "warm-up did not finish"
            time.sleep(0.2)
        assert ready.json()["codec"] == "loaded"
