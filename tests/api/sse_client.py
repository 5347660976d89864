"""A Server-Sent Events reader for the tests: the stream as (id, event, data) records, comments kept apart."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson


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
