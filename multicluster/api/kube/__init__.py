"""The read-only Kubernetes-compatible API: every synced type, in two scopes (one cluster, all clusters).

    {PREFIX}/{cluster}/version, /api, /api/v1, /apis, /apis/{g}, /apis/{g}/{v}      discovery
    {PREFIX}/{cluster}/api/v1/[namespaces/{ns}/]{resource}[/{name}]                 list, get, watch
    {PREFIX}/{cluster}/apis/{g}/{v}/[namespaces/{ns}/]{resource}[/{name}]

with PREFIX = /apis/clusters.multicluster.practice.com/v1alpha1/clusters and `_all` as the all-clusters name
(see paths.py, docs/kubernetes-api.md). Errors are Status objects (the API middleware converts its own answers
under this prefix); any method but GET is a 405 MethodNotAllowed: the API only reads the store.

Modules: paths (prefix, scopes, path parsing), discovery, lists (list/get, paging, freshness warnings), watch
(watch streams from the change feed), tables (per-kind Table columns), status (Status objects), handlers (the
route). This package module imports nothing so
that the middleware can import paths and status without a cycle.
"""
