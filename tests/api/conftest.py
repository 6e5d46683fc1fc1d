"""The real gateway over loopback, fed by the scriptable vLLM-compatible server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from app.config import Settings
from tests.support.gateway import running_gateway
from tests.support.vllm_server import VLLMServer


@pytest.fixture(scope="session")
def api_vllm() -> Iterator[VLLMServer]:
    with VLLMServer() as server:
        yield server


@pytest.fixture(scope="session")
def clone_vllm() -> Iterator[VLLMServer]:
    """A backend for cloning tests: it counts one token per prompt character, and a
    reference's audio tokens alone are hundreds of characters."""
    with VLLMServer(max_model_len=1_000_000) as server:
        yield server


@pytest.fixture
def vllm(api_vllm: VLLMServer) -> Iterator[VLLMServer]:
    yield from api_vllm.fresh()


@pytest.fixture
def clone_backend(clone_vllm: VLLMServer) -> Iterator[VLLMServer]:
    """The cloning backend, reset around each test."""
    yield from clone_vllm.fresh()


def gateway_settings(vllm_url: str, snac_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "tts_api": vllm_url,
        "model_name": "tinyorpheus",
        "snac_model": str(snac_dir),
        "device": "cpu",
        "snac_noise": False,
        "first_token_timeout": 3.0,
        "inter_token_timeout": 2.0,
        "backend_connect_timeout": 1.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def gateway_url(api_vllm: VLLMServer, tiny_snac_dir: Path) -> Iterator[str]:
    with running_gateway(gateway_settings(api_vllm.url, tiny_snac_dir)) as url:
        yield url


GatewayStarter = Callable[..., str]
"""``start(backend, **overrides)``: the URL of a gateway started on ``backend``."""


@pytest.fixture(scope="module")
def module_gateway(
    tiny_snac_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayStarter]:
    """Starts a test module's own gateways (`gateway_settings` plus overrides), each
    saving voices in a fresh DATA_DIR; they stop when the module's tests are done."""
    with ExitStack() as running:

        def start(backend: VLLMServer, **overrides: object) -> str:
            data_dir = tmp_path_factory.mktemp("data")
            settings = gateway_settings(backend.url, tiny_snac_dir, data_dir=data_dir, **overrides)
            return running.enter_context(running_gateway(settings))

        yield start
