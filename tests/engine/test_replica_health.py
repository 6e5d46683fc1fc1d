"""Replica health of the HTTP engine: retries before the first token, the circuit breaker
per replica, probing back in — against a backend that refuses and resets on command."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from app.engine.replicas import BreakerPolicy
from app.errors import BackendError, BackendUnavailable
from tests.engine.test_http import AUDIO, PARAMS, PROMPT, check_finished, collect, ids, make_engine
from tests.support.tcp_faults import TcpFront
from tests.support.vllm_server import Script, VLLMServer, unused_port_url

FAST = BreakerPolicy(failures=2, backoff=0.3, max_backoff=1.2)


@pytest.fixture
def front(vllm: VLLMServer) -> Iterator[TcpFront]:
    with TcpFront(vllm.port) as tcp:
        yield tcp


async def wait_until(condition: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_resets_before_the_answer_are_retried_on_the_same_replica(
    vllm: VLLMServer, front: TcpFront
) -> None:
    front.push("reset", "reset_after_request")
    engine = make_engine([front.url], breaker=BreakerPolicy(failures=5))
    try:
        vllm.push(Script(tokens=AUDIO))
        check_finished(batches := await collect(engine), "stop")
        assert ids(batches) == AUDIO
        assert front.resets == 2 and len(vllm.completions) == 1
        assert engine.replicas.retries == 2
        assert [h.state for h in engine.replica_health()] == ["closed"]
    finally:
        await engine.aclose()


async def test_a_drop_before_the_first_token_is_retried_once_tokens_are_not(
    vllm: VLLMServer,
) -> None:
    engine = make_engine([vllm.url])
    try:
        # Headers sent, then the connection drops: nothing was generated for the client.
        vllm.push(Script(tokens=AUDIO, drop_after=0), Script(tokens=AUDIO))
        batches = await collect(engine)
        assert ids(batches) == AUDIO and len(vllm.completions) == 2
        # After tokens the failure is final: a retry would repeat audio already sent.
        vllm.push(Script(tokens=AUDIO, drop_after=3))
        got: list[object] = []
        with pytest.raises(BackendError, match="dropped mid-stream"):
            await collect(engine, into=got)  # type: ignore[arg-type]
        assert len(vllm.completions) == 3 and ids(got) == AUDIO[:3]  # type: ignore[arg-type]
    finally:
        await engine.aclose()


async def test_a_failing_replica_leaves_rotation_and_is_probed_back_in(
    vllm: VLLMServer, front: TcpFront
) -> None:
    front.push(*["reset"] * 3)  # two requests, then the first probe
    engine = make_engine([front.url, vllm.url], breaker=FAST)
    try:
        for _ in range(3):  # those routed there first fail over to the good replica
            check_finished(await collect(engine), "stop")
        (bad, good) = engine.replica_health()
        assert bad.state == "open" and bad.opened_total == 1 and bad.failures_total == 2
        assert good.state == "closed" and good.failures_total == 0
        assert [r.url for r in engine.replicas.route()] == [vllm.url]
        # Out of rotation: no request goes there.
        accepted = front.accepted
        for _ in range(3):
            await collect(engine)
        assert front.accepted == accepted
        # The first probe is reset too: the back-off doubles; the next probe answers.
        await wait_until(lambda: front.accepted > accepted)
        await wait_until(lambda: engine.replica_health()[0].state == "open")
        assert engine.replica_health()[0].retry_in is not None
        await wait_until(lambda: engine.replica_health()[0].state == "closed", seconds=3)
        before = len(vllm.completions)
        for _ in range(4):
            await collect(engine)
        # Back in rotation: round-robin sends it some of the traffic again.
        assert front.accepted > accepted + 2 and len(vllm.completions) - before == 4
    finally:
        await engine.aclose()


async def test_with_every_replica_out_requests_fail_fast_with_retry_after() -> None:
    urls = [unused_port_url(), unused_port_url()]
    engine = make_engine(urls, breaker=FAST, first_token_timeout=10.0)
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailable) as first:
            await collect(engine)
        assert all(url in str(first.value.detail) for url in urls)
        assert not any(url in first.value.message for url in urls)
        assert [h.state for h in engine.replica_health()] != ["closed", "closed"]
        await wait_until(lambda: all(h.state == "open" for h in engine.replica_health()))
        with pytest.raises(BackendUnavailable) as later:
            await collect(engine)
        # Neither request waited for its 10 s first-token deadline.
        assert time.monotonic() - started < 4.0
        assert int(later.value.headers["Retry-After"]) >= 1
        assert not await engine.ready()
    finally:
        await engine.aclose()


async def test_resets_while_the_replica_serves_others_do_not_open_its_circuit(
    vllm: VLLMServer, front: TcpFront
) -> None:
    engine = make_engine([front.url], breaker=FAST, inter_token_timeout=5.0)
    vllm.push(Script(tokens=AUDIO, hang_after=1))
    busy = engine.stream(PROMPT, PARAMS)
    try:
        await anext(busy)  # one stream being served: the replica is alive
        front.push(*["reset"] * 5)
        vllm.push(Script(tokens=AUDIO))
        assert ids(await collect(engine)) == AUDIO
        assert front.resets == 5
        assert engine.replica_health()[0].state == "closed"
    finally:
        await busy.aclose()
        await engine.aclose()


async def test_a_burst_beyond_the_backlog_loses_no_stream(vllm: VLLMServer) -> None:
    # Six connections at a time, the rest reset: 40 paced streams at once all complete,
    # each retried until a connection frees up (about 82 tokens/s, as at capacity).
    with TcpFront(vllm.port, max_connections=6) as front:
        vllm.default_script = lambda body: Script(tokens=AUDIO, delay=1 / 82)
        engine = make_engine([front.url], first_token_timeout=20.0, inter_token_timeout=5.0)
        try:
            results = await asyncio.gather(
                *(collect(engine) for _ in range(40)), return_exceptions=True
            )
        finally:
            await engine.aclose()
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == []
    assert all(ids(r) == AUDIO for r in results if isinstance(r, list))
    assert front.resets >= 20  # the burst really was refused at the door
    assert len(vllm.completions) == 40
