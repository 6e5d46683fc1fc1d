import subprocess
import sys
from pathlib import Path

import pytest

from app.config import SettingsError, load_settings


def test_defaults_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TTS_API", raising=False)
    settings = load_settings()
    assert settings.backend_urls == []
    assert settings.default_speaker in settings.speakers


def test_lists_accept_commas_and_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPEAKERS", "tara, leo")
    monkeypatch.setenv("TTS_API", "http://a:1/, http://b:2")
    settings = load_settings()
    assert settings.speakers == ["tara", "leo"]
    assert settings.backend_urls == ["http://a:1", "http://b:2"]
    # Built-in aliases that point outside a custom SPEAKERS fall back to the default.
    assert set(settings.voice_aliases.values()) <= {"tara", "leo"}
    monkeypatch.setenv("SPEAKERS", '["tara"]')
    assert load_settings().speakers == ["tara"]
    # So do the built-in Deepgram models; a table of one's own replaces them.
    monkeypatch.setenv("SPEAKERS", "tara, leo")
    assert set(load_settings().deepgram_voices.values()) <= {"tara", "leo"}
    monkeypatch.setenv("DEEPGRAM_VOICES", "aura-2-zeus-en=leo, my-model=tara")
    assert load_settings().deepgram_voices == {"aura-2-zeus-en": "leo", "my-model": "tara"}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_BATCH_SIZE", "many"),
        ("MAX_BATCH_FRAMES", "0"),
        ("MAX_BATCH_FRAMES", "some"),
        ("DEVICE", "tpu"),
        ("DEFAULT_SPEAKER", "nobody"),
        ("DEFAULT_REPETITION_PENALTY", "0.5"),
        ("VOICE_ALIASES", "alloy="),
        ("VOICE_ALIASES", "alloy=nova,nova=tara"),
        ("NORMALIZE_TEXT", "maybe"),
        ("SEGMENT_MAX_CHARS", "5"),
        ("SEGMENT_FIRST_MAX_CHARS", "300"),
        ("DECODE_DTYPE", "int8"),
        ("CUDA_GRAPH_BATCH", "[0.5, -1]"),
        ("CUDA_GRAPH_BATCH", "[]"),
        ("CUDA_GRAPH_BATCH", "0.5,,x"),
        ("CUDA_GRAPH_BATCH", "[true]"),
        ("CUDA_GRAPH_BATCH", "__import__('os').getcwd()"),
        ("CUDA_GRAPH_BATCH", "61"),
        ("CUDA_GRAPH_BATCH", "nan"),
        ("DEEPGRAM_VOICES", "aura-2-helena-en=nobody"),
        ("WS_IDLE_TIMEOUT_SECONDS", "0"),
        ("WS_MAX_PENDING_CHARS", "10"),
    ],
)
def test_invalid_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    text = str(info.value)
    assert name in text or name.split("_")[0] in text


def test_python_m_app_refuses_invalid_settings() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "app"],
        env={"PATH": "", "MAX_BATCH_SIZE": "zero"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "MAX_BATCH_SIZE" in proc.stderr


def test_python_m_app_explains_a_model_that_cannot_load(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "app", "--port", "0"],
        env={"PATH": "", "SNAC_MODEL": str(tmp_path / "missing"), "TTS_API": "http://127.0.0.1:9"},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode != 0
    assert "start-up failed" in proc.stderr and "SNAC_MODEL" in proc.stderr


def test_cuda_graph_buckets_are_seconds_as_json_or_a_comma_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().cuda_graph_batch == "auto"
    monkeypatch.setenv("CUDA_GRAPH_BATCH", "[0.1, 0.2, 0.5, 1.0, 1.5, 2.0, 3.0]")
    assert load_settings().cuda_graph_batch == [0.1, 0.2, 0.5, 1.0, 1.5, 2.0, 3.0]
    monkeypatch.setenv("CUDA_GRAPH_BATCH", " 1.5, 0.5 ,1, 0.5")
    assert load_settings().cuda_graph_batch == [0.5, 1.0, 1.5]
    monkeypatch.setenv("CUDA_GRAPH_BATCH", "AUTO")
    assert load_settings().cuda_graph_batch == "auto"


def test_cuda_graphs_and_torch_compile_are_alternatives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_GRAPHS", "true")
    monkeypatch.setenv("DECODE_DTYPE", "bfloat16")
    settings = load_settings()
    assert settings.cuda_graphs and not settings.torch_compile
    assert settings.decode_dtype == "bfloat16"
    monkeypatch.setenv("TORCH_COMPILE", "true")
    with pytest.raises(SettingsError, match="alternatives"):
        load_settings()
