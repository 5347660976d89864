"""One watcher's resumable stream of events: the durable log up to now, then the hub, without gap or repeat.

A Follower subscribes to the hub first and reads the log second, so nothing committed in between is lost: an
entry lands in the log before its commit ends, and in the subscription's queue after. It keeps, per cluster, the
position of the last entry it has considered (sent, or judged not to concern the watcher); the hub's events at
or before that position were already given by the log and are dropped. Those positions are the watcher's
resourceVersion (positions.py), so a watcher that reconnects with them continues exactly after its last event.

The wire formats (Server-Sent Events on /v1, Kubernetes watch lines) are the API's business; this module only
says which changes a watcher sees and in what order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Hashable

from multicluster.feed import positions
from multicluster.feed.hub import Event, Hub, Subscription
from multicluster.feed.match import Filter
from multicluster.store.base import Change, Store

LOG_PAGE = 500  # entries per read of the log


class Expired(Exception):
    """The position asked for is older than the log keeps, or newer than it (a store that was replaced)."""


class Follower:
    """`since()` or `now()`, then `catch_up()`, then `live()` until done; `close()` always."""

    def __init__(self, store: Store, hub: Hub, flt: Filter, *, limit: int | None = None,
                 also: Callable[[Change], bool] | None = None) -> None:
        self.store = store
        self.filter = flt
        self.also = also  # a further test of a change's identity (names, several namespaces), or None
        self.sub: Subscription = hub.subscribe(flt, limit)
        self.pos: dict[str, int] = {}
        self._start: dict[str, int] = {}
        self._check = False
        self._token: bytes | None = None  # token() of `pos` as it stands, once asked for; None = to be made

    def token(self) -> str:
        """The resourceVersion after the last event given (what a client resumes from)."""
        return self._encoded().decode("ascii")

    def _encoded(self) -> bytes:
        if self._token is None:
            self._token = positions.encode(self.pos).encode("ascii")
        return self._token

    def close(self) -> None:
        self.sub.close()

    def _in_scope(self, cluster: str) -> bool:
        return not self.filter.clusters or cluster in self.filter.clusters

    async def now(self) -> str:
        """Start from the current state: the log positions now (read before the caller reads the objects)."""
        logged = await self.store.log_positions()
        self._start = {c: p.last for c, p in logged.items() if self._in_scope(c)}
        self.pos = dict(self._start)
        self._token = None
        self._check = False
        return self.token()

    def since(self, token: str) -> None:
        """Resume after a resourceVersion this API issued (positions.BadPosition if it did not)."""
        self._start = {c: seq for c, seq in positions.decode(token).items() if self._in_scope(c)}
        self.pos = dict(self._start)
        self._token = None
        self._check = True

    def _event(self, c: Change) -> Event | None:
        if not self.filter.routes(c) or (self.also is not None and not self.also(c)):
            return None
        kind = self.filter.event(c)
        return None if kind is None else Event(kind, c, {})

    async def catch_up(self) -> AsyncIterator[Event]:
        """Every change after the start positions, from the log, oldest first per cluster. Expired when a
        resumed position is older than what the log keeps."""
        logged = await self.store.log_positions()
        scope = self.filter.clusters or frozenset(logged) | frozenset(self._start)
        for cluster in sorted(scope):
            at = self._start.get(cluster, 0)
            p = logged.get(cluster)
            last, floor = (p.last, p.floor) if p is not None else (0, 0)
            if self._check and at < floor:
                raise Expired(f"too old resource version: {at} ({floor + 1}) in cluster {cluster}")
            if self._check and at > last:
                raise Expired(f"resource version {at} of cluster {cluster} is newer than its change log ({last}): "
                              "the store was replaced; list again")
            self.pos[cluster] = at
            while True:
                page = await self.store.changes_after(cluster, self.pos[cluster], self.filter.gvr, LOG_PAGE)
                for c in page:
                    self.pos[cluster] = c.seq
                    self._token = None
                    ev = self._event(c)
                    if ev is not None:
                        yield ev
                if len(page) < LOG_PAGE:
                    break
            # Everything of this cluster up to `last` committed before the log was read: considered.
            self.pos[cluster] = max(self.pos[cluster], last)
            self._token = None

    async def live(self, timeout: float | None) -> list[Event]:
        """The hub's next events not given yet ([] after `timeout` seconds of quiet); hub.Closed when the
        subscription ends (too slow, a gap in a cluster's stream, shutdown). Call `sent(event)` for each as it
        is sent, so that `token()` says where the watcher stands."""
        out: list[Event] = []
        for ev in await self.sub.next(timeout=timeout):
            c = ev.change
            if c.seq > self.pos.get(c.cluster, 0) and (self.also is None or self.also(c)):
                out.append(ev)
        return out

    def sent(self, ev: Event) -> bytes:
        """Record that `ev` was sent; the resourceVersion after it. Watchers that stand at the same positions after
        it (those of one list, once caught up) share one encoding of the token through the event's scratch: the
        token after `ev` follows from the token before it and `ev`'s position alone."""
        c = ev.change
        if c.seq <= self.pos.get(c.cluster, 0):
            return self._encoded()
        key = (self._encoded(), c.cluster, c.seq)
        self.pos[c.cluster] = c.seq
        shared = ev.shared.get(key)
        if shared is None:
            self._token = None
            shared = ev.shared[key] = (self._encoded(),)
        self._token = shared[0]
        return self._token

    def encode(self, events: list[Event], fmt: Hashable, one: Callable[[Event, bytes], bytes]) -> bytes:
        """`events` (from live()) as this watcher sends them: `one` encodes an event with the resourceVersion just
        after it, and the positions move past them. Watchers of one list that stand at the same place receive the
        same events in the same batches, so the first to encode a batch leaves it for the others (kept in the
        scratch of the batch's first event): `fmt` says everything the bytes depend on besides the events and the
        positions. A watcher with a further test of its own (`also`) encodes its batches itself."""
        if not events:
            return b""
        key: Hashable = None
        if self.also is None:
            # Same positions before, same first event (one object per filter and change), same length: the same
            # events, as every watcher of a filter gets that filter's events in one order.
            key = ("batch", fmt, self._encoded(), id(events[0]), len(events))
            hit = events[0].shared.get(key)
            if hit is not None:
                body, token = hit
                pos = self.pos  # where sent() would have moved them, without decoding the token
                for ev in events:
                    c = ev.change
                    if c.seq > pos.get(c.cluster, 0):
                        pos[c.cluster] = c.seq
                self._token = token
                return body
        body = b"".join([one(ev, self.sent(ev)) for ev in events])
        if key is not None:
            events[0].shared[key] = (body, self._encoded())
        return body
