"""Demo model cache: built once, atomically, and usable by the real engine and codec."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from app.codec.snac import load_codec
from app.demo import models as demo
from app.demo.models import DemoModels, ensure_demo_models
from app.engine.base import GenerationParams, Prompt
from app.engine.local import LocalEngine

PROMPT = Prompt(
    "<custom_token_3><|begin_of_text|>tara: Hi<|eot_id|><custom_token_4><custom_token_5>"
    "<custom_token_1>"
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> DemoModels:
    return ensure_demo_models(tmp_path_factory.mktemp("cache"))


def refuse_to_build(*args: object, **kwargs: object) -> Path:
    raise AssertionError("the demo models were rebuilt")


async def test_demo_models_drive_the_engine_and_the_codec(built: DemoModels) -> None:
    engine = LocalEngine.load(str(built.llm_dir), device="cpu", max_streams=1)
    tokens: list[int] = []
    seed = 0
    while len(tokens) < 14:  # a stream may end early on END_OF_SPEECH: draw another
        params = GenerationParams(14, seed=seed)
        tokens = [t async for batch in engine.stream(PROMPT, params) for t in batch.token_ids]
        seed += 1
    await engine.aclose()
    frames = np.array(tokens[:14]).reshape(2, 7) - 128266 - np.arange(7) * 4096
    assert frames.min() >= 0 and frames.max() <= 4095

    codec = load_codec(str(built.snac_dir), device="cpu")
    config = json.loads((built.snac_dir / "config.json").read_text())
    assert config["decoder_dim"] == 1024 and config["encoder_dim"] == 48  # real dimensions
    pcm = codec.decode(frames)
    assert pcm.shape == (2 * 2048,) and np.isfinite(pcm).all() and np.abs(pcm).max() > 0


def test_second_call_reuses_the_build(
    built: DemoModels, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cache = built.llm_dir.parent.parent
    marker = (built.llm_dir.parent / demo.MARKER).read_text()
    monkeypatch.setattr(demo, "write_tiny_orpheus_llm", refuse_to_build)
    monkeypatch.setattr(demo, "write_random_snac", refuse_to_build)
    with caplog.at_level(logging.INFO, logger="app.demo.models"):
        assert ensure_demo_models(cache) == built
    assert (built.llm_dir.parent / demo.MARKER).read_text() == marker
    assert "using the demo models" in caplog.text
    assert [p.name for p in cache.iterdir()] == [built.llm_dir.parent.name]


def test_interrupted_build_leaves_nothing_and_is_redone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def power_cut(*args: object, **kwargs: object) -> Path:
        raise RuntimeError("power cut")

    with monkeypatch.context() as patch:
        patch.setattr(demo, "write_random_snac", power_cut)
        with pytest.raises(RuntimeError, match="power cut"):
            ensure_demo_models(tmp_path)
    assert list(tmp_path.iterdir()) == []

    # A folder without the marker (say, copied by hand halfway) is not trusted either.
    stale = tmp_path / f"demo-v{demo.BUILD_VERSION}"
    (stale / "llm").mkdir(parents=True)
    (stale / "llm" / "junk").write_text("half a model")
    models = ensure_demo_models(tmp_path)
    assert not (models.llm_dir / "junk").exists()
    assert (models.llm_dir / "config.json").is_file()
    assert (models.snac_dir / "pytorch_model.bin").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [stale.name]
