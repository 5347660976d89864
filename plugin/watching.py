"""`kubectl multicluster list ... -w`: the table, then one row per change, like `kubectl get -w`.

It reads the daemon's Server-Sent Events (GET /v1/resources?watch=true, see multicluster/api/sse.py): the
initial ADDED events are printed as pages of the table, live events one row each. A dropped connection (the
daemon restarted, a proxy cut it, the daemon closed a watcher that fell behind) is reopened with the id of the
last event received (Last-Event-ID), so no change is missed or printed twice; a position the daemon no longer
keeps (an error event with code 410) starts over from the current state, with a warning. Ctrl-C ends it (exit
130, as every command of the plugin). Imported only when --watch is given: a plain `list` never loads it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import orjson

from plugin import printers
from plugin.client import PAGE_SIZE, ApiError, Client, PluginError, Unreachable
from plugin.crd_columns import CRDColumns
from plugin.output import warn

READ_TIMEOUT = 60.0  # the daemon sends a heartbeat every 15 s: a minute of silence is a dead connection
RETRY_MAX = 5.0


@dataclass
class Record:
    event: str
    data: bytes
    id: str | None


def records(resp: Any) -> Iterator[Record]:
    """The events of a text/event-stream response (comments skipped); ends with the stream."""
    ident: str | None = None
    kind = ""
    data: list[bytes] = []
    for raw in resp:
        line = raw.rstrip(b"\r\n")
        if not line:
            if kind or data:
                yield Record(kind or "message", b"\n".join(data), ident)
            ident, kind, data = None, "", []
            continue
        if line.startswith(b":"):
            continue
        name, _, value = line.partition(b":")
        value = value[1:] if value.startswith(b" ") else value
        if name == b"id":
            ident = value.decode("utf-8", "replace")
        elif name == b"event":
            kind = value.decode("utf-8", "replace")
        elif name == b"data":
            data.append(value)


class EventPrinter:
    """Pages of (event, cluster, object) in the chosen output."""

    def __init__(self, info: printers.ResourceInfo, output: str | None, out: TextIO, *, events: bool,
                 no_headers: bool, color: bool) -> None:
        self.output = output
        self.out = out
        self.events = events
        self.info = info
        self.cols = printers.columns_for(info, output == "wide") if output in (None, "wide") else []
        headers = (["EVENT"] if events else []) + [h for h, _ in self.cols]
        self.table = printers.TablePrinter(headers, out, no_headers=no_headers, color=color) if self.cols else None
        self.count = 0

    def page(self, items: Sequence[tuple[str, str, dict[str, Any]]]) -> None:
        if not items:
            return
        self.count += len(items)
        if self.table is not None:
            now = time.time()
            self.table.rows([([kind] if self.events else []) + [fn(cluster, obj, now) for _, fn in self.cols]
                             for kind, cluster, obj in items])
            return
        parts = []
        for kind, cluster, obj in items:
            if self.output == "name":
                name = f"{cluster}/{self.info.type_name}/{(obj.get('metadata') or {}).get('name') or ''}"
                parts.append(f"{kind} {name}\n" if self.events else name + "\n")
                continue
            doc: Mapping[str, Any] = printers.with_cluster(cluster, obj)
            if self.events:
                doc = {"type": kind, "object": doc}
            if self.output == "json":
                parts.append(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
            else:
                parts.append("---\n" + printers.to_yaml(doc))
        self.out.write("".join(parts))
        self.out.flush()


def watch(client: Client, base: list[tuple[str, str]], printer: EventPrinter, *, chunk_size: int = PAGE_SIZE,
          retry: float = 1.0) -> None:
    """Print the stream until Ctrl-C. A request the daemon refuses (bad selector, no such type) is an error;
    a connection that drops is reopened from the last event's id."""
    last: str | None = None
    connected_once = False
    outage = False
    wait = retry
    while True:
        headers = {"Last-Event-ID": last} if last else {}
        try:
            resp = client.open_stream("/v1/resources", [*base, ("watch", "true")], headers, READ_TIMEOUT)
        except Unreachable:
            if not connected_once:
                raise
            time.sleep(wait)
            wait = min(wait * 2, RETRY_MAX)
            continue
        if outage:
            warn("reconnected: resuming after the last change shown" if last else "reconnected")
        connected_once, outage, wait = True, False, retry
        last, expired = _read(resp, printer, last, chunk_size)
        if not expired:
            warn("the watch's connection to the daemon was lost; reconnecting")
            outage = True


def _read(resp: Any, printer: EventPrinter, last: str | None, chunk_size: int) -> tuple[str | None, bool]:
    """Print one connection's events; the id to resume from, and whether the daemon said it was too old."""
    pending: list[tuple[str, str, dict[str, Any]]] = []
    try:
        with resp:
            for rec in records(resp):
                if rec.event in ("ADDED", "MODIFIED", "DELETED"):
                    item = orjson.loads(rec.data)
                    entry = (rec.event, str(item.get("cluster", "")), item.get("object") or {})
                    if rec.id is None:  # the initial state: printed a page at a time
                        pending.append(entry)
                        if len(pending) >= chunk_size:
                            printer.page(pending)
                            pending = []
                    else:
                        printer.page([entry])
                elif rec.event == "SYNCED":
                    printer.page(pending)
                    pending = []
                    _freshness(orjson.loads(rec.data).get("clusters") or {})
                elif rec.event == "error":
                    if _expired(rec):
                        return None, True
                    break
                if rec.id:
                    last = rec.id
    except (OSError, ValueError):
        pass  # the connection dropped or was cut mid-event: reopened from the last id
    finally:
        printer.page(pending)
    return last, False


def _expired(rec: Record) -> bool:
    """An error event: True when the position is too old (start over); raises for one that is not about the
    connection (TooSlow and Closed are: the caller reconnects)."""
    try:
        body = orjson.loads(rec.data)
    except orjson.JSONDecodeError:
        body = {}
    if body.get("code") == 410:
        warn("the daemon no longer keeps the changes since the last one shown; listing the current state again")
        return True
    if body.get("code") not in (429, 503):
        raise ApiError(int(body.get("code") or 500), str(body.get("error") or "the watch failed"),
                       hint=body.get("hint"))
    return False


def _freshness(block: dict[str, Any]) -> None:
    for s in block.get("stale") or []:
        warn(f"cluster {s.get('name')} is stale: {s.get('error') or 'its data may be old'}")
    for name in block.get("missing") or []:
        warn(f"cluster {name} is missing (unknown to the daemon, or this type never synced there)")


def run(client: Client, base: list[tuple[str, str]], output: str | None, *, events: bool, no_headers: bool,
        chunk_size: int, color: bool) -> None:
    """The resource's columns (a CRD's printer columns included) from one small list request, which also reports
    bad input before any output; then the stream."""
    page = client.get_json("/v1/resources", [*base, ("limit", "1")])
    if not isinstance(page, dict):
        raise PluginError("unexpected answer from /v1/resources", hint="is the daemon up to date?")
    info = printers.ResourceInfo.from_api(page.get("resource") or {})
    if output in (None, "wide"):
        # A custom resource's table gets its CRD's printer columns, read from a cluster that has one (the list's
        # clusters, then the ones the watch names).
        clusters = [str(i.get("cluster", "")) for i in page.get("items") or []]
        clusters += [value for key, value in base if key == "cluster"]
        info = CRDColumns(client).apply(info, clusters)
    printer = EventPrinter(info, output, sys.stdout, events=events, no_headers=no_headers,
                           color=color)
    try:
        watch(client, base, printer, chunk_size=chunk_size)
    finally:
        sys.stdout.flush()
