"""A follower's batches: watchers of one list that stand at the same place share one encoding of each batch,
and each still ends at its own, correct resourceVersion; a watcher with a test of its own encodes for itself."""

from __future__ import annotations

from multicluster.feed import positions
from multicluster.feed.follow import Follower
from multicluster.feed.hub import Event, Hub
from multicluster.feed.match import Filter
from multicluster.store import Store
from tests.store.helpers import PODS, row


class Encoder:
    """Counts the events it encodes (each as its name and the token after it)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, ev: Event, token: bytes) -> bytes:
        self.calls += 1
        return ev.change.name.encode() + b"@" + token + b"\n"


async def test_watchers_of_one_list_share_each_batch(store: Store) -> None:
    hub = Hub()
    hub.start({c: p.last for c, p in (await store.log_positions()).items()})
    store.listen(hub.publish)
    followers = [Follower(store, hub, Filter(PODS)) for _ in range(3)]
    own_test = Follower(store, hub, Filter(PODS), also=lambda c: c.name != "b")
    for f in [*followers, own_test]:
        await f.now()
    await store.apply([row("a", 1), row("b", 1, cluster="c2")])
    await store.apply([row("c", 1)])
    enc = Encoder()
    bodies = [f.encode(await f.live(1), "test", enc) for f in followers]
    # One encoding of the two commits' three events, for all three watchers.
    assert enc.calls == 3
    assert bodies[0] == bodies[1] == bodies[2]
    assert [line.split(b"@")[0] for line in bodies[0].splitlines()] == [b"a", b"b", b"c"]
    # Each watcher stands after the last event, and the token in the last line says so.
    last = bodies[0].splitlines()[-1].split(b"@")[1].decode()
    assert all(f.token() == last for f in followers)
    assert positions.decode(last) == {"c1": 2, "c2": 1}
    # A different format is encoded again.
    other = Encoder()
    more = [Follower(store, hub, Filter(PODS)) for _ in range(2)]
    for f in more:
        await f.now()
    await store.apply([row("d", 1)])
    encoded = [f.encode(await f.live(1), ("other", 1), other) for f in more]
    assert encoded == [b"d@" + more[0].token().encode() + b"\n"] * 2
    assert other.calls == 1
    # The watcher with its own test: its own batch, without "b".
    mine = Encoder()
    body = own_test.encode(await own_test.live(1), "test", mine)
    assert [line.split(b"@")[0] for line in body.splitlines()] == [b"a", b"c", b"d"]
    assert mine.calls == 3
    # The watchers that encoded nothing themselves go on exactly where the one that did does.
    await store.apply([row("e", 1)])
    for f in followers:
        events = await f.live(1)
        assert [ev.change.name for ev in events] == ["d", "e"]
        f.encode(events, "test", enc)
        assert positions.decode(f.token()) == {"c1": 4, "c2": 1}
    assert enc.calls == 5
    for f in [*followers, *more, own_test]:
        f.close()
