"""Logging: readable text for people, JSON lines in containers (MULTICLUSTER_LOG_FORMAT=json)."""

from __future__ import annotations

import logging
import os
import sys

import orjson


class _JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


def setup(level: str = "INFO", fmt: str | None = None) -> None:
    fmt = fmt or os.environ.get("MULTICLUSTER_LOG_FORMAT", "text")
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiohttp.access", "aiomysql", "kubernetes_asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
