"""From member clusters to the store.

    informer.py  list + watch of one cluster x type (resourceVersion, 410 Gone, bookmarks, resync)
    sink.py      informer events → Rows/Deletes on the shared write queue
    rows.py      object → Row (what the store keeps of an object)
    writer.py    the batch writer draining the queue into the store
    health.py    per-cluster and per-type sync state (what /v1/clusters and freshness report)
    cluster.py   one cluster: discovery and its informers

The names below are the package's surface for the daemon, tests and benchmarks; the submodules never import this
file, only each other.
"""

from multicluster.sync.cluster import ClusterSync
from multicluster.sync.health import ClusterHealth, Tracker
from multicluster.sync.informer import Informer, InformerOptions
from multicluster.sync.rows import to_row
from multicluster.sync.sink import StoreSink
from multicluster.sync.writer import RowKey, WriteQueue, Writer

__all__ = [
    "ClusterHealth",
    "ClusterSync",
    "Informer",
    "InformerOptions",
    "RowKey",
    "StoreSink",
    "Tracker",
    "WriteQueue",
    "Writer",
    "to_row",
]
