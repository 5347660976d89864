"""A Server-Sent Events reader for the tests: the stream as (id, event, data) records, comments kept apart."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from multicluster.feed import positions


@dataclass
class Record:
    event: str
    data: bytes
    id: str | None = None

    def json(self) -> Any:
        return orjson.loads(self.data)


@dataclass
class Reader:
    """Reads one response's events; `pings` counts the comment lines seen."""

    resp: aiohttp.ClientResponse
    pings: int = 0
    _buf: list[bytes] = field(default_factory=list)

    async def next(self) -> Record | None:
        """The next event (skipping comments), or None at the end of the stream."""
        ident: str | None = None
        kind = "message"
        data: list[bytes] = []
        while True:
            line = await self.resp.content.readline()
            if not line:
                return None
            line = line.rstrip(b"\r\n")
            if not line:
                if data or kind != "message":
                    return Record(kind, b"\n".join(data), ident)
                continue
            if line.startswith(b":"):
                self.pings += 1
                continue
            name, _, value = line.partition(b":")
            value = value[1:] if value.startswith(b" ") else value
            if name == b"id":
                ident = value.decode()
            elif name == b"event":
                kind = value.decode()
            elif name == b"data":
                data.append(value)

    async def until(self, kind: str) -> list[Record]:
        """Every event up to and including the first of `kind` (AssertionError if the stream ends first)."""
        out: list[Record] = []
        while True:
            rec = await self.next()
            assert rec is not None, f"the stream ended before {kind}: {[(r.event, r.data[:80]) for r in out]}"
            out.append(rec)
            if rec.event == kind:
                return out

    async def take(self, n: int) -> list[Record]:
        out: list[Record] = []
        while len(out) < n:
            rec = await self.next()
            assert rec is not None, f"the stream ended after {len(out)} of {n} events: {out}"
            out.append(rec)
        return out


def names(records: list[Record]) -> list[tuple[str, str, str]]:
    """(event, cluster, name) of each change event."""
    out = []
    for r in records:
        if r.event in ("ADDED", "MODIFIED", "DELETED"):
            d = r.json()
            out.append((r.event, d["cluster"], d["object"]["metadata"]["name"]))
    return out


Seen = list[tuple[str, str, str, Any]]  # (event, cluster, name, the object's resourceVersion)


async def collect(url: str, ns: str, out: Seen, ids: list[str], ready: Any, gvr: str = "configmaps") -> None:
    """Follow a daemon's watch of `gvr` in `ns` into `out` (the initial state first) and `ids` (one per live
    event) until cancelled; `ready` (an asyncio.Event) is set once the initial state was read. Checks that
    each event advances its cluster's position (no position is sent twice) and that no error event comes."""
    last: dict[str, int] = {}
    async with aiohttp.ClientSession() as s:
        resp = await s.get(url + "/v1/resources", params={"gvr": gvr, "namespace": ns, "watch": "true"},
                           timeout=aiohttp.ClientTimeout(total=None, sock_read=300))
        assert resp.status == 200, await resp.text()
        r = Reader(resp)
        for rec in (await r.until("SYNCED"))[:-1]:  # the current state, as ADDED events without ids
            d = rec.json()
            out.append((rec.event, d["cluster"], d["object"]["metadata"]["name"],
                        d["object"]["metadata"]["resourceVersion"]))
        ready.set()
        while True:
            rec = await r.next()
            assert rec is not None and rec.event != "error", rec
            d = rec.json()
            md = d["object"]["metadata"]
            at = positions.decode(rec.id or "")[d["cluster"]]
            assert at > last.get(d["cluster"], 0), f"position {at} of {d['cluster']} again or out of order"
            last[d["cluster"]] = at
            out.append((rec.event, d["cluster"], md["name"], md["resourceVersion"]))
            ids.append(rec.id or "")


def final(events: Seen) -> dict[tuple[str, str], int]:
    """(cluster, name) -> resourceVersion after applying the events in order."""
    state: dict[tuple[str, str], int] = {}
    for kind, cluster, name, rv in events:
        if kind == "DELETED":
            state.pop((cluster, name), None)
        else:
            state[(cluster, name)] = int(rv)
    return state
