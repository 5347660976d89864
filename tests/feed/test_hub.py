"""The hub: a real store's committed changes reach the subscriptions whose filters they pass, in position order,
with Kubernetes selector semantics; a watcher that cannot keep up is closed while the others go on."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from multicluster.feed import positions
from multicluster.feed.hub import Closed, Event, Hub, Subscription
from multicluster.feed.match import Filter
from multicluster.selectors import parse_field_selector, parse_label_selector
from multicluster.store import Delete, Store
from multicluster.store.base import Change
from multicluster.store.sqlite import SQLiteStore
from tests.store.helpers import DEPLOYS, PODS, row


def seen(events: list[Event]) -> list[tuple[str, str, str]]:
    return [(kind, c.cluster, c.name) for kind, c, _ in events]


async def drain(sub: Subscription) -> list[Event]:
    return list(await sub.next(timeout=0)) if len(sub) else []


def test_positions_round_trip_and_refuse_what_they_did_not_issue() -> None:
    token = positions.encode({"c2": 9, "c1": 5})
    assert token.startswith("mc1.") and positions.decode(token) == {"c1": 5, "c2": 9}
    assert positions.decode(positions.encode({})) == {}
    for bad in ["12345", "mc1.!!!", "mc1." + "A" * 10, positions.encode({"c": 1})[:-3] + "xyz", "mc1." + "A" * 70000,
                "mc1.W1siYyIsLTFdXQ"]:  # the last is [["c",-1]]
        with pytest.raises(positions.BadPosition):
            positions.decode(bad)


async def test_changes_reach_matching_subscriptions_in_commit_order(store: Store) -> None:
    hub = Hub()
    hub.start({c: p.last for c, p in (await store.log_positions()).items()})
    store.listen(hub.publish)
    everything = hub.subscribe(Filter(PODS))
    c2_only = hub.subscribe(Filter(PODS, clusters=frozenset({"c2"})))
    in_ns = hub.subscribe(Filter(PODS, namespace="other"))
    deploys = hub.subscribe(Filter(DEPLOYS))
    await store.apply([row("a", 1), row("b", 1, cluster="c2"), row("n", 1, namespace="other")])
    await store.apply([row("a", 2), Delete("c2", PODS, "default", "b", 3)])
    assert seen(await drain(everything)) == [("ADDED", "c1", "a"), ("ADDED", "c1", "n"), ("ADDED", "c2", "b"),
                                             ("MODIFIED", "c1", "a"), ("DELETED", "c2", "b")]
    assert seen(await drain(c2_only)) == [("ADDED", "c2", "b"), ("DELETED", "c2", "b")]
    assert seen(await drain(in_ns)) == [("ADDED", "c1", "n")]
    assert await drain(deploys) == []
    # Unjoin: every row of the cluster leaves as DELETED.
    await store.delete_cluster("c1")
    assert sorted(seen(await drain(everything))) == [("DELETED", "c1", "a"), ("DELETED", "c1", "n")]
    # Nothing waits: next() with a timeout and nothing to say returns nothing.
    assert await everything.next(timeout=0.01) == []
    everything.close()
    with pytest.raises(Closed):
        await everything.next()
    assert hub.watchers == 3


async def test_selector_transitions_follow_kubernetes(store: Store) -> None:
    """An object that starts matching is ADDED, one that stops matching is DELETED, one that matches neither
    before nor after is not sent (labels and fields alike)."""
    hub = Hub()
    store.listen(hub.publish)
    web = hub.subscribe(Filter(PODS, labels=parse_label_selector("app=web")))
    not_canary = hub.subscribe(Filter(PODS, labels=parse_label_selector("!canary,tier notin (db)")))
    running = hub.subscribe(Filter(PODS, fields=parse_field_selector("status.phase=Running")))
    unscheduled = hub.subscribe(Filter(PODS, fields=parse_field_selector("spec.nodeName=,metadata.name=p")))
    await store.apply([row("p", 1, labels={"app": "web"}, fields={"status.phase": "Pending"})])
    await store.apply([row("p", 2, labels={"app": "api", "canary": "1"}, fields={"status.phase": "Running"})])
    await store.apply([row("p", 3, labels={"app": "web"}, fields={"status.phase": "Running", "spec.nodeName": "n1"})])
    await store.apply([row("p", 4, labels={"app": "web", "tier": "db"}, fields={"status.phase": "Running"})])
    await store.apply([Delete("c1", PODS, "default", "p", 5)])
    assert [e.kind for e in await drain(web)] == ["ADDED", "DELETED", "ADDED", "MODIFIED", "DELETED"]
    assert [e.kind for e in await drain(not_canary)] == ["ADDED", "DELETED", "ADDED", "DELETED"]
    assert [e.kind for e in await drain(running)] == ["ADDED", "MODIFIED", "MODIFIED", "DELETED"]
    assert [e.kind for e in await drain(unscheduled)] == ["ADDED", "MODIFIED", "DELETED", "ADDED", "DELETED"]


async def test_a_slow_watcher_is_closed_and_the_others_go_on(store: Store) -> None:
    hub = Hub(queue_limit=5)
    store.listen(hub.publish)
    slow = hub.subscribe(Filter(PODS))
    fast = hub.subscribe(Filter(PODS))
    got: list[Event] = []
    for i in range(12):
        await store.apply([row(f"p{i}", 1)])
        got += await drain(fast)
    assert len(got) == 12
    with pytest.raises(Closed) as err:
        await slow.next()
    assert err.value.reason == "too slow" and hub.closed_slow == 1
    assert hub.watchers == 1  # the closed one holds nothing any more


async def test_batches_arriving_out_of_order_are_passed_on_in_position_order(store: Store) -> None:
    """Two batches of one cluster committed on two connections can finish in either order."""
    first = await store.apply([row("a", 1), row("b", 1)])
    second = await store.apply([row("c", 1)])
    third = await store.apply([row("d", 1)])
    hub = Hub(gap_seconds=0.2)
    sub = hub.subscribe(Filter(PODS))
    hub.publish(third.changes)
    hub.publish(second.changes)
    assert len(sub) == 0  # held: positions 1 and 2 have not arrived
    hub.publish(first.changes)
    assert [c.seq for _, c, _ in await drain(sub)] == [1, 2, 3, 4]
    hub.publish(first.changes)  # a repeat is dropped
    assert len(sub) == 0
    # A gap that never fills closes the watchers of that cluster (they resume from the log); the hub goes on.
    later = await store.apply([row("e", 1)])
    after = await store.apply([row("f", 1)])
    other = hub.subscribe(Filter(PODS, clusters=frozenset({"elsewhere"})))
    hub.publish(after.changes)
    with pytest.raises(Closed) as err:
        await sub.next(timeout=5)
    assert err.value.reason == "gap"
    assert other.closed == ""
    fresh = hub.subscribe(Filter(PODS))
    hub.publish(later.changes)  # too late: already given up
    hub.publish((await store.apply([row("g", 1)])).changes)
    assert [c.name for _, c, _ in await drain(fresh)] == ["g"]


async def test_the_hub_starts_where_the_log_stands(store: Store) -> None:
    old = await store.apply([row("a", 1)])
    hub = Hub()
    hub.start({c: p.last for c, p in (await store.log_positions()).items()})
    sub = hub.subscribe(Filter(PODS))
    hub.publish(old.changes)  # committed before the hub started: not passed on again
    new = await store.apply([row("b", 1)])
    hub.publish(new.changes)
    assert [c.name for _, c, _ in await drain(sub)] == ["b"]
    hub.stop()
    with pytest.raises(Closed):
        await asyncio.wait_for(sub.next(), 1)


async def test_every_watcher_of_a_change_shares_one_scratch_for_its_encodings(store: Store) -> None:
    """What makes one encoding serve a hundred watchers: the watchers a change reaches hold the same scratch
    dict, and each change has its own."""
    hub = Hub()
    hub.start({c: p.last for c, p in (await store.log_positions()).items()})
    store.listen(hub.publish)
    subs = [hub.subscribe(Filter(PODS)) for _ in range(3)] + [hub.subscribe(Filter(PODS, namespace="default"))]
    await store.apply([row("a", 1), row("b", 1)])
    got = [await drain(s) for s in subs]
    assert all([c.name for _, c, _ in events] == ["a", "b"] for events in got)
    for i in range(2):
        first = got[0][i].shared
        assert all(events[i].shared is first for events in got)
    assert got[0][0].shared is not got[0][1].shared
    got[0][0].shared["format"] = (b"encoded once",)
    assert got[3][0].shared["format"] == (b"encoded once",)


async def test_with_no_subscriber_the_hub_takes_positions_and_a_later_subscriber_sees_what_follows(
        store: Store) -> None:
    """The store offers positions first (SQLite's writer process sends entries packed and building them costs the
    initial sync); the hub takes them only while nobody could see the entries, and stays in position order."""
    hub = Hub()
    hub.start({c: p.last for c, p in (await store.log_positions()).items()})
    built: list[int] = []

    def publish(changes: Sequence[Change]) -> None:
        built.append(len(changes))
        hub.publish(changes)

    store.listen(publish, hub.advance)
    await store.apply([row("a", 1), row("b", 1)])
    sqlite_process = isinstance(store, SQLiteStore) and store.writer_mode == "process"
    assert built == ([] if sqlite_process else [2])  # only the packed path offers positions
    assert hub.passed("c1") == 2
    sub = hub.subscribe(Filter(PODS))
    assert not hub.advance({"c1": 3})  # a subscriber: the entries are wanted
    await store.apply([row("a", 2)])
    assert seen(await drain(sub)) == [("MODIFIED", "c1", "a")]
    assert hub.passed("c1") == 3
