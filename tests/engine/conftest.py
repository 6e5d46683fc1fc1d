from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from app.engine.http import HttpCompletionsEngine
from tests.support.vllm_server import VLLMServer


@pytest.fixture(scope="session")
def vllm_session() -> Iterator[VLLMServer]:
    with VLLMServer() as server:
        yield server


@pytest.fixture
def vllm(vllm_session: VLLMServer) -> Iterator[VLLMServer]:
    """The shared loopback vLLM server, with no leftover scripts or recordings."""
    yield from vllm_session.fresh()


@pytest.fixture
async def engine(vllm: VLLMServer) -> AsyncIterator[HttpCompletionsEngine]:
    engine = HttpCompletionsEngine(
        [vllm.url],
        vllm.model,
        connect_timeout=1.0,
        first_token_timeout=2.0,
        inter_token_timeout=1.0,
    )
    yield engine
    await engine.aclose()
