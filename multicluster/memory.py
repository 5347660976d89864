"""Give memory back to the OS after bursts (initial syncs, relists).

A sync parses pages and queues rows that are freed soon after, but the allocator keeps the freed pages mapped, so
the process would stay at its peak size for its whole life. glibc's malloc_trim returns them; elsewhere this is
a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

log = logging.getLogger(__name__)

_libc: ctypes.CDLL | None = None
try:
    _name = ctypes.util.find_library("c")
    if _name:
        _lib = ctypes.CDLL(_name)
        if hasattr(_lib, "malloc_trim"):
            _libc = _lib
except OSError:
    _libc = None


def release() -> None:
    gc.collect()
    if _libc is not None:
        _libc.malloc_trim(0)


def settle() -> None:
    """Once the initial sync is done: release(), then move every object alive now out of the cyclic collector's
    view (gc.freeze). They are the daemon's long-lived state (modules, config, clients, indexes); a full
    collection walks every tracked object while it holds the event loop, long enough to show in every watcher's
    latency. Garbage among them is still freed by reference counting; only cycles among them stay."""
    release()
    gc.freeze()
