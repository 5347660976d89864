"""kubectl-multicluster: the kubectl plugin (typer CLI, HTTP client for the daemon API, printers)."""
