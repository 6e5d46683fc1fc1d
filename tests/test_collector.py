"""`frozen_startup`: what lives at start-up leaves the collector's passes, until shutdown."""

from __future__ import annotations

import gc

from app.collector import frozen_startup


def test_startup_objects_are_frozen_while_the_gateway_runs() -> None:
    kept = [object() for _ in range(10)], {"a": [1, 2]}
    assert gc.get_freeze_count() == 0
    with frozen_startup():
        assert gc.get_freeze_count() > 0
        assert not any(obj is kept for obj in gc.get_objects())  # frozen: not tracked by gens
        made = [[] for _ in range(5)]
        assert gc.is_tracked(made[0])
    assert gc.get_freeze_count() == 0
    assert kept
