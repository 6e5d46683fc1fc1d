"""Shared fixtures: a tiny random-weight SNAC 24 kHz, built once per test session.

It has the real rates and strides (so frames, hops and receptive fields are the
real ones) with small widths, so a decode takes milliseconds.

Tests run torch single-threaded: the tiny model's ops are too small to gain from a
second thread, and on a busy 2-core runner (CI, or several pytest processes) two
OpenMP threads spin against each other and made decodes 20x slower here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from app.codec.snac import SnacCodec, load_codec
from app.demo.random_snac import write_random_snac
from tests.support.postgres import PostgresServer, postgres_bindir


@pytest.fixture(scope="session", autouse=True)
def _single_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_snac_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with config.json and pytorch_model.bin of a tiny random SNAC."""
    return write_random_snac(tmp_path_factory.mktemp("snac_tiny"), tiny=True, seed=0)


@pytest.fixture(scope="session")
def tiny_codec(tiny_snac_dir: Path) -> SnacCodec:
    """The tiny SNAC on CPU with noise off: decoding is a deterministic function of the codes."""
    return load_codec(str(tiny_snac_dir), device="cpu", noise=False)


@pytest.fixture(scope="session")
def tiny_noisy_codec(tiny_snac_dir: Path) -> SnacCodec:
    """The tiny SNAC with its noise blocks on, as the published model decodes by default."""
    return load_codec(str(tiny_snac_dir), device="cpu", noise=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server on loopback for the whole session (see tests/support)."""
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl, postgres) on this machine")
    with PostgresServer(bindir) as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of an empty database of its own."""
    return postgres_server.fresh_database()
