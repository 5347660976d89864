"""Benchmarks against the real harness (kube-apiservers, etcd, MariaDB). Run with `nox -s bench`."""
