"""A bounded cache of review answers that expire.

Every answer of the master (a token's user, an access decision) is kept for a few seconds so that a kubectl
command, which makes several requests, costs a handful of reviews instead of one per request; it is bounded
because a client can make as many distinct questions as it likes (new tokens, new namespaces). Concurrent misses
of one key share one review.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ExpiringCache(Generic[K, V]):
    """At most `max_entries` answers (least recently used dropped first), each valid for its own ttl."""

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._pending: dict[K, asyncio.Task[V]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def forget(self, which: Callable[[K], bool]) -> None:
        """Drop the answers whose key `which` selects (their next question goes to the master again)."""
        for key in [k for k in self._entries if which(k)]:
            del self._entries[key]

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V, ttl: float) -> None:
        if ttl <= 0:
            return
        self._entries[key] = (self._clock() + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def get_or_load(self, key: K, load: Callable[[], Coroutine[Any, Any, V]], ttl: Callable[[V], float]) -> V:
        """The cached answer, or `load()`'s, kept for `ttl(answer)` seconds. The load runs as a task of its own
        that concurrent callers asking the same key share: a caller that goes away (a closed connection) does not
        cancel the others' answer. A failed load is not cached."""
        value = self.get(key)
        if value is not None:
            self.hits += 1
            return value
        task = self._pending.get(key)
        if task is None:
            self.misses += 1
            task = asyncio.get_running_loop().create_task(load(), name=f"review-{len(self._pending)}")
            self._pending[key] = task
            task.add_done_callback(lambda t: self._loaded(key, t, ttl))
        return await asyncio.shield(task)

    def _loaded(self, key: K, task: asyncio.Task[V], ttl: Callable[[V], float]) -> None:
        self._pending.pop(key, None)
        if not task.cancelled() and task.exception() is None:
            value = task.result()
            self.put(key, value, ttl(value))
