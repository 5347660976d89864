"""The change feed: committed changes, as they happen, to everyone watching.

    store (change log, same transaction as the row)  ──after commit──▶  hub.Hub.publish  ──▶  Subscription queues
                                                                                               (one per watcher)

- `positions.py`: the opaque resourceVersion handed to clients (a position per cluster) and its parsing.
- `match.py`: a watcher's filter (clusters, type, namespace, label and field selectors with the list path's
  semantics) and how a change looks through it (an object that stops matching is DELETED for that watcher).
- `hub.py`: the in-process hub the store's listener feeds; bounded per-watcher queues; a watcher that cannot
  keep up is closed (as kube-apiserver's watch cache closes an unresponsive watcher), never buffered without
  bound; it resumes from its last position through the durable log.

The feed holds references to the changes of recent commits only while some watcher's queue holds them; it
never caches objects for its own sake. Live events come from the hub, never from polling SQL; the log
(`Store.changes_after`) serves resumption and catch-up.
"""
