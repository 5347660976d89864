"""Real local clusters for tests, the demo and benchmarks: etcd + N kube-apiservers (+ controller-managers),
and a private MariaDB server. Nothing here is a mock; see harness.py and mariadb.py."""
