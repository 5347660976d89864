"""Lease mode: changes committed by the other replicas reach this replica's hub by tailing the shared log.

In lease mode the informers are sharded, so most clusters' rows are written by another replica and their
commits never pass through this process's store listener. Every replica still serves a watch of every cluster:
a Tailer reads `change_positions` (one small row per cluster) every `interval` seconds and, for each cluster
whose log is ahead of what this hub has passed on, reads the entries after that position (`changes_after`, a
range of the primary key, at most `batch` per cluster per round) and publishes them into the hub.

The hub numbers nothing itself: it passes each cluster's entries on in position order and ignores a position it
has already passed on, so the tailer and the local listener never double an event, whichever sees an entry
first (the local listener after its own commit, the tailer when it reads the log). When sharding moves a cluster
to this replica, its first local commit may come ahead of entries the previous owner wrote; the hub holds it
until the tailer fills the positions in between (within one interval, well inside the hub's GAP_SECONDS), so a
move has no gap and no repeat either.

Cost: with no news, one `SELECT cluster, last_seq, pruned_to FROM change_positions` per interval (rows = clusters);
with news, one primary-key range read per cluster that moved. With no watcher subscribed the entries are not read
at all (the hub just moves its positions on). Added latency for a change synced by another replica: up to one
interval (0.2 s by default) plus the read.
"""

from __future__ import annotations

import asyncio
import logging

from multicluster.feed.hub import Hub
from multicluster.store.base import Store

log = logging.getLogger(__name__)

INTERVAL = 0.2
BATCH = 500


class Tailer:
    def __init__(self, store: Store, hub: Hub, *, interval: float = INTERVAL, batch: int = BATCH) -> None:
        self.store = store
        self.hub = hub
        self.interval = interval
        self.batch = batch
        self.published = 0  # entries this tailer handed to the hub (a number for tests and benchmarks)

    async def poll(self) -> bool:
        """One round; True when some cluster has more entries waiting than one batch took."""
        more = False
        for cluster, p in (await self.store.log_positions()).items():
            seen = self.hub.passed(cluster)
            if p.last <= seen:
                continue
            if not self.hub.watchers:
                self.hub.skip_to(cluster, p.last)
                continue
            # Entries pruned since `seen` are gone: start after the floor (the hub closes the watchers of that
            # cluster as for any gap, and they resume from the log, which answers them 410 if need be).
            page = await self.store.changes_after(cluster, max(seen, p.floor), None, self.batch)
            if page:
                self.hub.publish(page)
                self.published += len(page)
            more = more or len(page) >= self.batch
        return more

    async def run(self) -> None:
        while True:
            if not await self.poll():
                await asyncio.sleep(self.interval)
            else:
                await asyncio.sleep(0)
