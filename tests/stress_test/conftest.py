"""The real gateway over loopback, fed by the scriptable vLLM-compatible server, for
running the stress tool against it (in-process through its functions, or as a CLI)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from stress_test.client import GatewayClient
from tests.api.conftest import gateway_settings
from tests.support.gateway import running_gateway
from tests.support.vllm_server import VLLMServer

FRAMES = 20
"""Frames the backend serves per request unless a test says otherwise."""


@pytest.fixture(scope="module")
def backend() -> Iterator[VLLMServer]:
    with VLLMServer(frames=FRAMES) as server:
        yield server


@pytest.fixture
def vllm(backend: VLLMServer) -> Iterator[VLLMServer]:
    yield from backend.fresh()


@pytest.fixture(scope="module")
def gateway(backend: VLLMServer, tiny_snac_dir: Path) -> Iterator[str]:
    # Generous timeouts: tests script long pauses and slow first tokens on purpose.
    settings = gateway_settings(
        backend.url, tiny_snac_dir, first_token_timeout=10.0, inter_token_timeout=5.0
    )
    with running_gateway(settings) as url:
        yield url


@pytest.fixture
async def client(gateway: str) -> AsyncIterator[GatewayClient]:
    async with GatewayClient(gateway, timeout=30.0) as http:
        yield http
