"""multicluster: mirror Kubernetes resources of many clusters into SQL, query them, and deliver objects to them."""

__version__ = "0.1.0"
