"""The codec service warms its decoder up on the worker before serving."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

import numpy as np
import pytest

from app.codec.request import DecodeRequest
from app.codec.service import WORKER_THREAD, CodecService
from app.codec.snac import SnacCodec


def request(seed: int = 0) -> DecodeRequest:
    frames = np.random.default_rng(seed).integers(0, 4096, size=(8, 7))
    return DecodeRequest(frames, (3, 5))


async def test_windows_wait_for_the_warm_up_then_decode(tiny_codec: SnacCodec) -> None:
    release = threading.Event()
    threads: list[str] = []

    def warm_up(stop: Callable[[], bool]) -> None:
        threads.append(threading.current_thread().name)
        release.wait(10)

    service = CodecService(tiny_codec, warm_up=warm_up)
    assert service.warming
    service.start()
    try:
        window = request()
        pending = asyncio.ensure_future(service.decode(window))
        await asyncio.sleep(0.2)
        assert service.warming and not pending.done()
        release.set()
        pcm = await asyncio.wait_for(pending, 10)
        assert not service.warming
        assert threads == [WORKER_THREAD]
        expected = tiny_codec.decode(window.frames, keep=window.keep)
        np.testing.assert_array_equal(pcm[3 * 2048 : 5 * 2048], expected[3 * 2048 : 5 * 2048])
    finally:
        service.close(timeout=10)


def test_closing_stops_a_warm_up_under_way(tiny_codec: SnacCodec) -> None:
    started = threading.Event()
    stopped = threading.Event()

    def warm_up(stop: Callable[[], bool]) -> None:
        started.set()
        while not stop():
            threading.Event().wait(0.01)
        stopped.set()

    service = CodecService(tiny_codec, warm_up=warm_up)
    service.start()
    assert started.wait(10)
    service.close(timeout=10)
    assert stopped.is_set()


async def test_a_warm_up_that_raises_leaves_a_working_decoder(
    tiny_codec: SnacCodec, caplog: pytest.LogCaptureFixture
) -> None:
    def warm_up(stop: Callable[[], bool]) -> None:
        raise RuntimeError("out of memory")

    service = CodecService(tiny_codec, warm_up=warm_up)
    with caplog.at_level(logging.ERROR, logger="app.codec.service"):
        service.start()
        try:
            pcm = await asyncio.wait_for(service.decode(request(1)), 10)
        finally:
            service.close(timeout=10)
    assert pcm.shape == (8 * 2048,) and not service.warming
    assert "decoder warm-up failed" in caplog.text


def test_a_service_without_warm_up_is_never_warming(tiny_codec: SnacCodec) -> None:
    assert not CodecService(tiny_codec).warming
