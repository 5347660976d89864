"""memory.settle: what is alive once the daemon is ready leaves the cyclic collector's view."""

from __future__ import annotations

import gc

from multicluster import memory


def test_settle_freezes_what_is_alive_and_later_objects_are_still_collected() -> None:
    gc.unfreeze()
    try:
        long_lived = [{"state": i} for i in range(1000)]
        memory.settle()
        assert gc.get_freeze_count() >= len(long_lived)
        # Objects made afterwards are still the collector's: a cycle among them is freed.
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
