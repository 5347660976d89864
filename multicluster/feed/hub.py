"""The in-process hub: committed changes to every watcher whose filter they pass.

The store calls `Hub.publish` after each commit (Store.listen), with the entries that commit appended to the
change log. The hub passes them on per cluster in position order: two batches of one cluster may finish on two
connections in either order (MySQL writes with several connections), so a batch that arrives ahead of a missing
position is held until the gap fills. A gap that does not fill within GAP_SECONDS (a commit whose entries never
reached this hub) closes the subscriptions that include the cluster, and the hub goes on from there: closing is
always safe, because a watcher resumes from its last position through the durable log.

Each Subscription has a bounded queue of events: the event type, the change, and a scratch dict made once per
delivered change and shared by every watcher it reaches. A watcher that encodes the change for its wire format
leaves the bytes there, so the next watcher with the same format reuses them (a hundred watchers of one type cost
one encoding per change, not a hundred); the scratch lives as long as some queue holds the event. When a
watcher's queue is full it is closed with reason "too slow" instead of growing or blocking the others: what
kube-apiserver's watch cache does with a watcher that does not keep up (it ends that watch; the client starts a
new one from the last resourceVersion it saw). Nothing here waits on a watcher.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import NamedTuple

from multicluster import metrics
from multicluster.feed.match import Filter
from multicluster.gvr import GVR
from multicluster.logsetup import cluster_logger
from multicluster.store.base import Change, EventType
from multicluster.workqueue import settle_within, wake

log = logging.getLogger(__name__)

QUEUE_LIMIT = 1000  # events a watcher may have waiting before it is closed as too slow
GAP_SECONDS = 2.0
HELD_LIMIT = 10_000  # entries held per cluster waiting for a gap to fill before the gap is given up


Shared = dict[Hashable, tuple[bytes, ...]]


class Event(NamedTuple):
    kind: EventType
    change: Change
    # Encodings of `change` made by one watcher for the others (key: the format and whatever it depends on;
    # value: the encoding's pieces, which the watcher joins with its own resourceVersion).
    shared: Shared


class Closed(Exception):
    """The subscription ended: the watcher was too slow, its cluster's stream had a gap, or the hub stopped."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Subscription:
    """One watcher's queue. Read it with `next()`; `close()` when done."""

    __slots__ = ("_hub", "_queue", "_waiter", "closed", "filter", "limit", "on_end")

    def __init__(self, hub: Hub, flt: Filter, limit: int) -> None:
        self._hub = hub
        self.filter = flt
        self.limit = limit
        self._queue: deque[Event] = deque()
        # The reader's wait in next(), if it is waiting: the first event (or the end) wakes it, once.
        self._waiter: asyncio.Future[None] | None = None
        self.closed: str = ""  # why it was closed ("" = open)
        # Called once with the reason when the subscription ends (the watch path drops a too-slow connection).
        self.on_end: Callable[[str], None] | None = None

    def _push(self, ev: Event) -> None:
        if self.closed:
            return
        if len(self._queue) >= self.limit:
            self._end("too slow")
            return
        self._queue.append(ev)
        wake(self._waiter)

    def _end(self, reason: str) -> None:
        if not self.closed:
            self.closed = reason
            self._queue.clear()
            wake(self._waiter)
            self._hub._drop(self)
            if self.on_end is not None:
                self.on_end(reason)

    async def next(self, timeout: float | None = None) -> list[Event]:
        """Every event waiting (at least one), or [] after `timeout` seconds without any; Closed once closed."""
        if not self._queue and not self.closed:
            # Woken once per batch by the first event (a hundred watchers: a hundred wake-ups, no task each).
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await settle_within(self._waiter, timeout)
            finally:
                self._waiter = None
            if not self._queue and not self.closed:
                return []
        if self.closed:
            raise Closed(self.closed)
        out = list(self._queue)
        self._queue.clear()
        return out

    def close(self) -> None:
        self._end("closed")

    def __len__(self) -> int:
        return len(self._queue)


class Hub:
    """Routes committed changes to subscriptions, in position order per cluster."""

    def __init__(self, queue_limit: int = QUEUE_LIMIT, gap_seconds: float = GAP_SECONDS) -> None:
        self.queue_limit = queue_limit
        self.gap_seconds = gap_seconds
        self._subs: set[Subscription] = set()
        # The same subscriptions by type, then by filter: a change is judged once per distinct filter (a hundred
        # watchers of one list are one judgement), and only against the filters of its own type.
        self._routes: dict[GVR, dict[Filter, set[Subscription]]] = {}
        self._next: dict[str, int] = {}  # cluster -> the position expected next
        self._held: dict[str, dict[int, Change]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.closed_slow = 0  # subscriptions closed for not keeping up (a metric for tests and /metrics)

    def start(self, last: Mapping[str, int]) -> None:
        """Where each cluster's log stands at start (Store.log_positions): the next entries follow these."""
        for cluster, seq in last.items():
            self._next[cluster] = seq + 1

    def subscribe(self, flt: Filter, limit: int | None = None) -> Subscription:
        sub = Subscription(self, flt, limit or self.queue_limit)
        self._subs.add(sub)
        self._routes.setdefault(flt.gvr, {}).setdefault(flt, set()).add(sub)
        metrics.WATCHERS.inc()
        return sub

    def _drop(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.discard(sub)
            by_filter = self._routes[sub.filter.gvr]
            group = by_filter[sub.filter]
            group.discard(sub)
            if not group:
                del by_filter[sub.filter]
                if not by_filter:
                    del self._routes[sub.filter.gvr]
            metrics.WATCHERS.dec()
        if sub.closed != "closed":
            metrics.WATCHES_CLOSED.labels(sub.closed).inc()
        if sub.closed == "too slow":
            self.closed_slow += 1
            log.info("closed a watch of %s: it did not keep up (%d events waiting)", sub.filter.gvr, sub.limit)

    @property
    def watchers(self) -> int:
        return len(self._subs)

    def passed(self, cluster: str) -> int:
        """The last position of `cluster` passed on (a tailer reads the log after it)."""
        return self._next.get(cluster, 1) - 1

    def skip_to(self, cluster: str, seq: int) -> None:
        """Treat `cluster`'s entries up to `seq` as passed on without reading them: with no watcher subscribed
        nobody would see them, and a watcher that subscribes later reads what it needs from the log itself."""
        if seq >= self._next.get(cluster, 1) and not self._subs:
            self._next[cluster] = seq + 1
            held = self._held.get(cluster)
            if held:
                for n in [n for n in held if n <= seq]:
                    del held[n]
                self._release(cluster)

    def advance(self, last: Mapping[str, int]) -> bool:
        """A committed batch by its last position per cluster (the store's PositionListener): with no subscriber
        and nothing held, that is all the hub needs, and the batch's entries need not be built."""
        if self._subs or self._held:
            return False
        for cluster, seq in last.items():
            self.skip_to(cluster, seq)
        return True

    def publish(self, changes: Sequence[Change]) -> None:
        """Entries of one commit (the store's listener). In order within each cluster."""
        for c in changes:
            expected = self._next.get(c.cluster, 1)
            if c.seq < expected:
                continue  # already passed on (a replay from the log by a tailer, say)
            if c.seq > expected:
                held = self._held.setdefault(c.cluster, {})
                held[c.seq] = c
                if len(held) > HELD_LIMIT:
                    self._give_up(c.cluster)
                elif c.cluster not in self._timers:
                    self._timers[c.cluster] = asyncio.get_running_loop().call_later(
                        self.gap_seconds, self._give_up, c.cluster)
                continue
            self._deliver(c)
            self._release(c.cluster)

    def _deliver(self, c: Change) -> None:
        self._next[c.cluster] = c.seq + 1
        by_filter = self._routes.get(c.gvr)
        if not by_filter:
            return
        shared: Shared = {}
        for flt, group in list(by_filter.items()):
            kind = flt.event(c) if flt.routes(c) else None
            if kind is not None:
                ev = Event(kind, c, shared)
                for sub in list(group):
                    sub._push(ev)

    def _release(self, cluster: str) -> None:
        """Pass on the held entries that now follow without a gap."""
        held = self._held.get(cluster)
        while held:
            c = held.pop(self._next[cluster], None)
            if c is None:
                return  # still a gap before the rest: its timer keeps running
            self._deliver(c)
        self._held.pop(cluster, None)
        timer = self._timers.pop(cluster, None)
        if timer is not None:
            timer.cancel()

    def _give_up(self, cluster: str) -> None:
        """A gap that did not fill: every watcher of the cluster resumes from the log; the hub goes on after it."""
        timer = self._timers.pop(cluster, None)
        if timer is not None:
            timer.cancel()
        held = self._held.pop(cluster, {})
        if not held:
            return
        cluster_logger(log, cluster).warning(
            "change log positions %d..%d never reached this replica's hub; its watchers are closed and resume from "
            "the log", self._next.get(cluster, 1), min(held) - 1)
        for sub in list(self._subs):
            if not sub.filter.clusters or cluster in sub.filter.clusters:
                sub._end("gap")
        self._next[cluster] = min(held)
        self._held[cluster] = held
        self._release(cluster)
        if self._held.get(cluster):  # another gap further on: it gets its own wait
            self._timers[cluster] = asyncio.get_running_loop().call_later(self.gap_seconds, self._give_up, cluster)

    def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for sub in list(self._subs):
            sub._end("shutdown")
