"""Fair ordering of decode jobs across streams (pure: no threads, no codec)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.codec.fair_queue import FairQueue


def test_first_chunks_first_then_streams_take_turns() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(4):
        queue.push(f"a{i}", stream="a")
    for i in range(2):
        queue.push(f"b{i}", stream="b")
    queue.push("c0", stream="c", first=True)
    assert queue.depth == 7
    assert queue.pop(100) == ["c0", "a0", "b0", "a1", "b1", "a2", "a3"]
    assert queue.depth == 0 and queue.pop(5) == []


def test_a_late_stream_does_not_wait_for_an_earlier_burst() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(10):
        queue.push(f"a{i}", stream="a")
    assert queue.pop(3) == ["a0", "a1", "a2"]
    queue.push("b0", stream="b")
    # b joins at the current virtual time, not behind a's whole backlog.
    assert queue.pop(2) == ["b0", "a3"]


def test_withdrawn_items_are_never_handed_out_and_costs_add_up() -> None:
    queue: FairQueue[str] = FairQueue()
    tickets = [queue.push(f"x{i}", stream=i, cost=i + 1) for i in range(4)]
    assert queue.cost == 10
    assert queue.withdraw(tickets[1]) and not queue.withdraw(tickets[1])
    assert queue.depth == 3 and queue.cost == 8
    assert queue.pop(10) == ["x0", "x2", "x3"]
    assert not queue.withdraw(tickets[0])  # already handed out
    assert queue.cost == 0 and queue.arrivals == 4


def test_clear_returns_what_was_queued() -> None:
    queue: FairQueue[int] = FairQueue()
    tickets = [queue.push(i, stream=i % 2) for i in range(5)]
    queue.withdraw(tickets[0])
    assert sorted(queue.clear()) == [1, 2, 3, 4]
    assert queue.depth == 0 and queue.pop(10) == []


@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), max_size=60), st.integers(1, 7))
def test_everything_pushed_comes_out_once_and_each_stream_in_order(
    pushes: list[tuple[int, bool]], limit: int
) -> None:
    queue: FairQueue[tuple[int, int]] = FairQueue()
    for n, (stream, first) in enumerate(pushes):
        queue.push((stream, n), stream=stream, first=first and n == 0)
    out: list[tuple[int, int]] = []
    while batch := queue.pop(limit):
        assert len(batch) <= limit
        out.extend(batch)
    assert sorted(out) == sorted((s, n) for n, (s, _) in enumerate(pushes))
    for stream in range(6):
        mine = [n for s, n in out if s == stream]
        assert mine == sorted(mine)


def test_forgotten_streams_do_not_pile_up() -> None:
    queue: FairQueue[int] = FairQueue()
    for stream in range(1000):
        queue.push(stream, stream=stream)
        assert queue.pop(1) == [stream]
    assert len(queue._next_tag) <= 2 * queue.depth + 65


def test_a_budget_stops_the_pop_before_the_item_that_would_exceed_it() -> None:
    queue: FairQueue[int] = FairQueue()
    stale = queue.push(9, stream="s")
    for size in (3, 2, 4, 1):
        queue.push(size, stream=f"t{size}")
    queue.withdraw(stale)
    # 3 + 2 fit a budget of 6; 4 would not, and the order is kept (nothing jumps ahead).
    assert queue.pop(10, budget=6, weight=lambda size: size) == [3, 2]
    # The first item always goes, even over the budget: a long window still gets decoded.
    assert queue.pop(10, budget=1, weight=lambda size: size) == [4]
    assert queue.pop(10, budget=1, weight=lambda size: size) == [1]
    assert queue.depth == 0


@given(
    st.lists(st.integers(min_value=1, max_value=8), min_size=1, max_size=40),
    st.integers(min_value=1, max_value=20),
)
def test_budgeted_pops_hand_out_everything_once_in_order(sizes: list[int], budget: int) -> None:
    queue: FairQueue[tuple[int, int]] = FairQueue()
    for i, size in enumerate(sizes):
        queue.push((i, size), stream=i)
    out: list[tuple[int, int]] = []
    while queue.depth:
        batch = queue.pop(16, budget=budget, weight=lambda item: item[1])
        assert batch and (len(batch) == 1 or sum(s for _, s in batch) <= budget)
        out += batch
    assert out == list(enumerate(sizes))
