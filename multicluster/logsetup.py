"""Logging: readable text for people, JSON lines in containers (MULTICLUSTER_LOG_FORMAT=json).

Which cluster and which resource type a record is about travel as fields, not as words in the message:
`cluster_logger()` gives a module a logger that adds them to every record, the JSON formatter writes them as
top-level keys (so a log pipeline can filter by cluster), and the text formatter shows them in one place and one
spelling, `cluster=NAME gvr=GROUP/VERSION/RESOURCE`, before the message.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import orjson

FIELDS = ("cluster", "gvr")  # LogRecord attributes set through `extra`, in the order they are shown


class ClusterLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger whose records carry `cluster` (and `gvr`, when given) as fields.

    A call's own `extra` is merged over the adapter's, so a message about another object can still name it."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        own: Mapping[str, object] = self.extra or {}
        kwargs["extra"] = {**own, **(kwargs.get("extra") or {})}
        return msg, kwargs


def cluster_logger(logger: logging.Logger | str, cluster: str, gvr: object | None = None) -> ClusterLogger:
    """`logger` (or the logger of that name) with `cluster` and, when given, `gvr` (its str()) on every record."""
    base = logging.getLogger(logger) if isinstance(logger, str) else logger
    fields: dict[str, object] = {"cluster": cluster}
    if gvr is not None:
        fields["gvr"] = str(gvr)
    return ClusterLogger(base, fields)


def fields_of(record: logging.LogRecord) -> dict[str, str]:
    """The record's cluster/gvr fields that are set."""
    out = {}
    for key in FIELDS:
        value = getattr(record, key, None)
        if value is not None and value != "":
            out[key] = str(value)
    return out


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            **fields_of(record),
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


class TextFormatter(logging.Formatter):
    """`12:00:00 WARNING cluster=c1 gvr=v1/pods message`; records without fields have no prefix."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(fields)s%(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        fields = fields_of(record)
        record.fields = "".join(f"{k}={v} " for k, v in fields.items())
        return super().format(record)


def setup(level: str = "INFO", fmt: str = "text") -> None:
    """Log at `level` to stderr, as text or (fmt "json", daemon.logFormat) JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiohttp.access", "aiomysql", "kubernetes_asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
