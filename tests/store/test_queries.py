"""Contract: query() filters, selectors, orders, keyset pagination, and hostile input."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from multicluster.errors import QueryError
from multicluster.gvr import GVR
from multicluster.store import Delete, Query, Requirement, Row, SortOrder, Store, StoredObject, sort_key

from .helpers import DEPLOYS, PODS, row

ORDERS: tuple[SortOrder, ...] = ("cluster", "namespace", "name", "created", "-created")


async def names(store: Store, q: Query) -> list[str]:
    return sorted(o.name for o in (await store.query(replace(q, limit=0))).items)


def L(key: str, op: str, *values: str) -> Requirement:
    return Requirement(key, op, values)


def expected_keys(rows: list[Row], order: SortOrder) -> list[tuple[str, ...]]:
    def key(r: Row) -> tuple[str, ...]:
        obj = StoredObject(r.cluster, r.gvr, r.namespace, r.name, r.uid, r.kind, r.resource_version, r.object,
                           r.created_at, "")
        return sort_key(order, obj)

    return sorted((key(r) for r in rows), reverse=order == "-created")


async def walk(store: Store, q: Query) -> list[StoredObject]:
    out: list[StoredObject] = []
    after = None
    for _ in range(1000):
        page = await store.query(replace(q, after=after))
        assert q.limit == 0 or len(page.items) <= q.limit
        out.extend(page.items)
        if page.next_after is None:
            return out
        assert page.items and page.next_after == sort_key(q.order, page.items[-1])
        after = page.next_after
    raise AssertionError("pagination did not end")


def dataset() -> list[Row]:
    """Ties on every sort column, unicode, and created_at duplicates, so each tiebreak is exercised."""
    rows = []
    ns_names = ["default", "kube-system", "a-ns"]
    base = ["web-0", "web-1", "db", "Zeta", "émile", "名前", "\uff46ull", "🚀-rocket", "a_b", "x" * 253]
    for i, (cluster, ns, name) in enumerate(itertools.product(["c1", "c2", "c10"], ns_names, base)):
        if i % 5 == 3:
            continue
        created = f"2026-01-{1 + i % 4:02d}T00:00:00Z"
        rows.append(row(name, 1, cluster=cluster, namespace=ns, created_at=created))
    return rows


async def test_label_selector_every_op(store: Store) -> None:
    await store.apply([
        row("p1", labels={"app": "web", "tier": "fe"}),
        row("p2", labels={"app": "db", "tier": "be"}),
        row("p3", labels={"app": "web"}),
        row("p4"),
        row("p5", labels={"app": "cache", "env": ""}),
        row("d1", gvr=DEPLOYS, labels={"app": "web"}),
    ])
    q = Query(gvr=PODS)
    cases = [
        ([L("app", "=", "web")], ["p1", "p3"]),
        ([L("app", "==", "web")], ["p1", "p3"]),
        ([L("app", "!=", "web")], ["p2", "p4", "p5"]),  # p4 has no `app` at all and still matches
        ([L("app", "in", "web", "db")], ["p1", "p2", "p3"]),
        ([L("app", "notin", "web", "db")], ["p4", "p5"]),
        ([L("tier", "exists")], ["p1", "p2"]),
        ([L("tier", "!")], ["p3", "p4", "p5"]),
        ([L("env", "=", "")], ["p5"]),
        ([L("env", "exists")], ["p5"]),
        ([L("app", "=", "web"), L("tier", "!")], ["p3"]),
        ([L("app", "in", "web"), L("tier", "notin", "fe")], ["p3"]),
        ([L("app", "in")], []),
        ([L("app", "notin")], ["p1", "p2", "p3", "p4", "p5"]),
        ([L("nope", "exists")], []),
        ([L("app", "=", "WEB")], []),  # values are case-sensitive
    ]
    for reqs, want in cases:
        assert await names(store, replace(q, labels=tuple(reqs))) == want, reqs
    with pytest.raises(QueryError):
        await store.query(replace(q, labels=(L("app", "gt", "1"),)))
    with pytest.raises(QueryError):
        await store.query(replace(q, labels=(L("app", "=", "a", "b"),)))


async def test_field_selectors(store: Store) -> None:
    await store.apply([
        row("p1", fields={"status.phase": "Running", "spec.nodeName": "n1"}),
        row("p2", namespace="kube-system", fields={"status.phase": "Pending"}),
        row("p3", fields={"status.phase": "Running", "spec.nodeName": "n2"}),
        row("p4", fields={"status.phase": "Failed", "spec.nodeName": ""}),
    ])
    q = Query(gvr=PODS)
    cases = [
        ([L("status.phase", "=", "Running")], ["p1", "p3"]),
        ([L("status.phase", "==", "Running")], ["p1", "p3"]),
        ([L("status.phase", "!=", "Running")], ["p2", "p4"]),
        ([L("spec.nodeName", "=", "n1")], ["p1"]),
        ([L("spec.nodeName", "!=", "n1")], ["p2", "p3", "p4"]),
        ([L("spec.nodeName", "=", "")], ["p2", "p4"]),  # a missing field reads as ""
        ([L("spec.nodeName", "!=", "")], ["p1", "p3"]),
        ([L("metadata.name", "=", "p2")], ["p2"]),
        ([L("metadata.name", "!=", "p2")], ["p1", "p3", "p4"]),
        ([L("metadata.namespace", "=", "kube-system")], ["p2"]),
        ([L("metadata.namespace", "!=", "kube-system")], ["p1", "p3", "p4"]),
        ([L("status.phase", "=", "Running"), L("spec.nodeName", "!=", "n1")], ["p3"]),
        ([L("status.unknown", "=", "x")], []),
        ([L("status.unknown", "!=", "x")], ["p1", "p2", "p3", "p4"]),
    ]
    for reqs, want in cases:
        assert await names(store, replace(q, fields=tuple(reqs))) == want, reqs
    with pytest.raises(QueryError):
        await store.query(replace(q, fields=(L("status.phase", "in", "Running"),)))


async def test_name_filters_treat_wildcards_literally(store: Store) -> None:
    all_names = ["a%b", "axb", "a_b", "aab", "a!b", "a\\b", "A%B", "prefix-1", "Prefix-2", "a!%b"]
    await store.apply([row(n) for n in all_names])
    q = Query(gvr=PODS)
    assert await names(store, replace(q, name_prefix="a%")) == ["a%b"]
    assert await names(store, replace(q, name_prefix="a_")) == ["a_b"]
    assert await names(store, replace(q, name_prefix="a!")) == ["a!%b", "a!b"]
    assert await names(store, replace(q, name_prefix="a\\")) == ["a\\b"]
    assert await names(store, replace(q, name_prefix="prefix")) == ["prefix-1"]  # case-sensitive
    assert await names(store, replace(q, name_contains="%")) == ["A%B", "a!%b", "a%b"]
    assert await names(store, replace(q, name_contains="_")) == ["a_b"]
    assert await names(store, replace(q, name_contains="!%")) == ["a!%b"]
    assert await names(store, replace(q, name_contains="\\")) == ["a\\b"]
    assert await names(store, replace(q, name_contains="fix-")) == ["Prefix-2", "prefix-1"]
    assert await names(store, replace(q, name_contains="%B")) == ["A%B"]
    assert await names(store, replace(q, name="a%b")) == ["a%b"]
    assert await names(store, replace(q, name="a_b")) == ["a_b"]
    assert await names(store, replace(q, name_prefix="a", name_contains="b", name="aab")) == ["aab"]


async def test_cluster_and_namespace_filters(store: Store) -> None:
    await store.apply([row("a", cluster="c1"), row("b", cluster="c2", namespace="ns2"),
                       row("c", cluster="c3", namespace="ns3")])
    q = Query(gvr=PODS)
    assert await names(store, replace(q, clusters=("c1", "c3"))) == ["a", "c"]
    assert await names(store, replace(q, namespaces=("ns2", "ns3"))) == ["b", "c"]
    assert await names(store, replace(q, clusters=("c1",), namespaces=("ns2",))) == []
    assert await names(store, replace(q, clusters=("c9",))) == []


async def test_allowed_limits_rows_per_cluster_and_namespace(store: Store) -> None:
    """Query.allowed is what an authenticated user may read: whole clusters, or some namespaces of a cluster."""
    await store.apply([row("a", cluster="c1", namespace="team-a"), row("b", cluster="c1", namespace="team-b"),
                       row("c", cluster="c2", namespace="team-a"), row("d", cluster="c2", namespace="team-b"),
                       row("e", cluster="c3", namespace="team-b"), row("x", cluster="c1", namespace="team-a",
                                                                        gvr=DEPLOYS)])
    q = Query(gvr=PODS)
    assert await names(store, replace(q, allowed=(("c1", ("team-a",)), ("c2", None)))) == ["a", "c", "d"]
    assert await names(store, replace(q, allowed=(("c3", None),))) == ["e"]
    assert await names(store, replace(q, allowed=(("c1", ("team-a", "team-b")),), clusters=("c1", "c2"))) == ["a", "b"]
    assert await names(store, replace(q, allowed=())) == []
    assert await names(store, replace(q, allowed=(("c1", ()),))) == []
    assert await names(store, replace(q, allowed=(("c1", ("tëam",)), ("c\u00e9", None)))) == []
    # Paging keeps the limit: every page, and the count after it.
    first = await store.query(replace(q, allowed=(("c1", None), ("c2", ("team-b",))), limit=1, count_remaining=True))
    assert [o.name for o in first.items] == ["a"] and first.remaining == 2
    assert sorted(await store.namespaces(PODS, ["c1", "c2"])) == [("c1", "team-a"), ("c1", "team-b"),
                                                                  ("c2", "team-a"), ("c2", "team-b")]
    assert await store.namespaces(DEPLOYS, ["c1", "c3"]) == [("c1", "team-a")]
    assert await store.namespaces(PODS, ["c\u00e9"]) == []


@pytest.mark.parametrize("order", ORDERS)
async def test_every_order_paginates_to_the_full_sorted_list(store: Store, order: SortOrder) -> None:
    rows = dataset()
    await store.apply(rows)
    await store.apply([row("other", gvr=DEPLOYS)])
    want = expected_keys(rows, order)
    everything = (await store.query(Query(gvr=PODS, order=order, limit=0))).items
    assert [sort_key(order, o) for o in everything] == want
    for limit in (1, 7, len(rows), len(rows) + 5):
        got = await walk(store, Query(gvr=PODS, order=order, limit=limit))
        assert [sort_key(order, o) for o in got] == want, limit
    # With filters the walk is still the filtered, sorted list.
    q = Query(gvr=PODS, order=order, limit=4, clusters=("c1", "c10"), name_prefix="web")
    filtered = [r for r in rows if r.cluster in ("c1", "c10") and r.name.startswith("web")]
    got = await walk(store, q)
    assert [sort_key(order, o) for o in got] == expected_keys(filtered, order)
    # One cluster and one namespace pin those sort columns (the keyset then leaves them out): same walk.
    for c, ns in {(r.cluster, r.namespace) for r in rows}:
        pinned = [r for r in rows if r.cluster == c and r.namespace == ns]
        got = await walk(store, Query(gvr=PODS, order=order, limit=1, clusters=(c,), namespaces=(ns,)))
        assert [sort_key(order, o) for o in got] == expected_keys(pinned, order), (c, ns)


@pytest.mark.parametrize("order", ORDERS)
async def test_pagination_under_concurrent_changes(store: Store, order: SortOrder) -> None:
    """Rows that exist for the whole walk appear exactly once, in order, whatever is inserted or deleted
    between pages (keyset pagination has no offsets to shift)."""
    stable = [row(f"s{i:02d}", 1, cluster=f"c{i % 3}", namespace=f"ns{i % 4}",
                  created_at=f"2026-01-{1 + i % 9:02d}T00:00:00Z") for i in range(30)]
    volatile = [row(f"v{i:02d}", 1, cluster=f"c{i % 3}", namespace=f"ns{i % 4}",
                    created_at=f"2026-01-{1 + i % 9:02d}T00:00:00Z") for i in range(12)]
    await store.apply([*stable, *volatile])
    seen: list[StoredObject] = []
    after = None
    step = 0
    while True:
        page = await store.query(Query(gvr=PODS, order=order, limit=4, after=after))
        seen.extend(page.items)
        if page.next_after is None:
            break
        after = page.next_after
        # Between pages: delete a volatile row, add new ones on both sides of the cursor.
        if step < len(volatile):
            v = volatile[step]
            await store.apply([Delete(v.cluster, PODS, v.namespace, v.name)])
        await store.apply([
            row(f"n{step:02d}a", 1, cluster="c0", namespace="ns0", created_at="2026-01-01T00:00:00Z"),
            row(f"z{step:02d}b", 1, cluster="c9", namespace="ns9", created_at="2026-12-31T00:00:00Z"),
        ])
        step += 1
        assert step < 100
    keys = [sort_key(order, o) for o in seen]
    assert len(keys) == len(set(keys)), "a row was returned twice"
    assert keys == sorted(keys, reverse=order == "-created"), "pages went backwards"
    got_stable = [o.name for o in seen if o.name.startswith("s")]
    assert sorted(got_stable) == [r.name for r in stable]


async def test_count_remaining(store: Store) -> None:
    await store.apply([row(f"p{i}", labels={"even": str(i % 2 == 0).lower()}) for i in range(10)])
    q = Query(gvr=PODS, order="name", limit=3, count_remaining=True)
    remaining = []
    after = None
    while True:
        page = await store.query(replace(q, after=after))
        remaining.append(page.remaining)
        if page.next_after is None:
            break
        after = page.next_after
    assert remaining == [7, 4, 1, 0]
    page = await store.query(replace(q, labels=(L("even", "=", "true"),)))
    assert [o.name for o in page.items] == ["p0", "p2", "p4"] and page.remaining == 2
    assert (await store.query(replace(q, limit=0))).remaining == 0
    assert (await store.query(replace(q, count_remaining=False))).remaining is None


async def test_limit_zero_and_bad_input(store: Store) -> None:
    await store.apply([row(f"p{i}") for i in range(5)])
    page = await store.query(Query(gvr=PODS, limit=0))
    assert len(page.items) == 5 and page.next_after is None
    page = await store.query(Query(gvr=PODS, limit=5))
    assert len(page.items) == 5 and page.next_after is None
    with pytest.raises(QueryError):
        await store.query(Query(gvr=PODS, after=("only-one",)))
    with pytest.raises(QueryError):
        await store.query(Query(gvr=PODS, order="created", after=("a", "b", "c")))
    with pytest.raises(QueryError):
        await store.query(Query(gvr=PODS, limit=-1))
    with pytest.raises(QueryError):
        await store.query(Query(gvr=PODS, order="sideways"))  # type: ignore[arg-type]


HOSTILE = [
    "' OR '1'='1",
    "x'; DROP TABLE resources; --",
    '" OR ""="',
    "1) OR (1=1",
    "\\' OR 1=1 -- ",
    "%' OR 1=1 #",
    "ü' OR 1=1 --",
    "`resources`",
    "?",
    "%s",
    "%",
    "_",
    "\x00",
]


async def test_hostile_strings_match_nothing_and_break_nothing(store: Store) -> None:
    rows = [row(f"p{i}", cluster=f"c{i % 2}", labels={"app": "web"}, fields={"status.phase": "Running"})
            for i in range(6)]
    await store.apply(rows)
    before = await store.counts()
    for s in HOSTILE:
        q = Query(gvr=PODS, limit=0)
        queries = [
            replace(q, clusters=(s,)),
            replace(q, clusters=(s, s)),
            replace(q, namespaces=(s,)),
            replace(q, name=s),
            replace(q, name_prefix=s),
            replace(q, name_contains=s),
            replace(q, labels=(L(s, "=", "web"),)),
            replace(q, labels=(L("app", "=", s),)),
            replace(q, labels=(L("app", "in", s, "x"),)),
            replace(q, labels=(L(s, "exists"),)),
            replace(q, fields=(L(s, "=", "Running"),)),
            replace(q, fields=(L("status.phase", "=", s),)),
            replace(q, fields=(L("metadata.name", "=", s),)),
            replace(q, fields=(L("metadata.namespace", "=", s),)),
            Query(gvr=GVR(s, "v1", "pods"), limit=0),
            Query(gvr=GVR("", s, s), limit=0),
        ]
        for query in queries:
            page = await store.query(query)
            assert page.items == [], (s, query)
        # Negative selectors with hostile values match everything, as they should.
        assert len((await store.query(replace(q, labels=(L("app", "!=", s),)))).items) == 6
        assert len((await store.query(replace(q, labels=(L(s, "!"),)))).items) == 6
        # A hostile continue token is just a position, or refused if no row could have produced it.
        if s.isascii():
            page = await store.query(Query(gvr=PODS, limit=0, after=(s, s, s)))
            assert [sort_key("cluster", o) for o in page.items] == [
                k for k in expected_keys(rows, "cluster") if k > (s, s, s)
            ]
        else:
            with pytest.raises(QueryError):
                await store.query(Query(gvr=PODS, limit=0, after=(s, s, s)))
        page = await store.query(Query(gvr=PODS, order="name", limit=0, after=(s, "c0", "default")))
        assert [o.name for o in page.items] == sorted(r.name for r in rows if r.name > s)
        assert await store.get(s, PODS, s, s) is None
        assert await store.load_index(s, PODS) == {}
    assert await store.counts() == before
    assert len((await store.query(Query(gvr=PODS, labels=(L("app", "=", "web"),), limit=0))).items) == 6
