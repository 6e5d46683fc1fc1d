"""Start-time fair queueing of decode jobs across streams: pure, no threads, no torch.

First chunks of streams go first (time to first audio); the rest in order of a
virtual start tag ``max(virtual time, the stream's previous tag + 1)``, so one
stream's burst takes turns with the other streams instead of blocking them. A job
withdrawn while queued (its client left) is never handed out. The caller provides
the locking.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(eq=False)
class Ticket(Generic[T]):
    """A queued item; hand it back to `FairQueue.withdraw` to take the item out."""

    item: T
    cost: int
    key: tuple[int, int, int]
    """Heap order: (priority class, virtual start tag, arrival number)."""
    queued: bool = True


class FairQueue(Generic[T]):
    def __init__(self) -> None:
        self._heap: list[tuple[tuple[int, int, int], Ticket[T]]] = []
        self._depth = 0  # queued tickets not withdrawn (the heap may hold withdrawn ones)
        self._cost = 0
        self._arrivals = 0
        self._vtime = 0
        self._next_tag: dict[Hashable, int] = {}

    @property
    def depth(self) -> int:
        """Items queued."""
        return self._depth

    @property
    def cost(self) -> int:
        """Sum of the queued items' costs (for the decoder: frames waiting)."""
        return self._cost

    @property
    def arrivals(self) -> int:
        """Items pushed so far: a waiter tells an arrival from a withdrawal by it."""
        return self._arrivals

    def push(self, item: T, *, stream: Hashable, first: bool = False, cost: int = 0) -> Ticket[T]:
        tag = max(self._vtime, self._next_tag.get(stream, 0))
        self._next_tag[stream] = tag + 1
        self._arrivals += 1
        ticket = Ticket(item, cost, (0 if first else 1, tag, self._arrivals))
        heapq.heappush(self._heap, (ticket.key, ticket))
        self._depth += 1
        self._cost += cost
        return ticket

    def withdraw(self, ticket: Ticket[T]) -> bool:
        """Take a still-queued item out (it stays in the heap, skipped); False if it was
        already handed out or withdrawn."""
        if not ticket.queued:
            return False
        ticket.queued = False
        self._depth -= 1
        self._cost -= ticket.cost
        return True

    def pop(
        self, limit: int, *, budget: int | None = None, weight: Callable[[T], int] | None = None
    ) -> list[T]:
        """Up to ``limit`` items in fair order; with a ``budget``, only while their
        ``weight`` adds up to at most it (the first item always goes)."""
        items: list[T] = []
        spent = 0
        while self._heap and len(items) < limit:
            ticket = self._heap[0][1]
            if not ticket.queued:
                heapq.heappop(self._heap)
                continue
            cost = weight(ticket.item) if weight is not None else 0
            if items and budget is not None and spent + cost > budget:
                break
            heapq.heappop(self._heap)
            self.withdraw(ticket)
            spent += cost
            self._vtime = max(self._vtime, ticket.key[1])
            items.append(ticket.item)
        if len(self._next_tag) > 2 * self._depth + 64:
            # A stream whose next tag is at most one ahead of virtual time differs from a
            # new one by one turn at most: forget it, or ended streams would pile up
            # (virtual time stands still while every stream sends a single job).
            self._next_tag = {s: t for s, t in self._next_tag.items() if t > self._vtime + 1}
        return items

    def clear(self) -> list[T]:
        """Withdraw everything; returns the items that were queued, in no particular order."""
        items = [ticket.item for _, ticket in self._heap if self.withdraw(ticket)]
        self._heap.clear()
        return items
