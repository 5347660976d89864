"""kubectl-multicluster: the kubectl plugin (typer CLI, HTTP client for the daemon API, printers)."""

PROG = "kubectl-multicluster"
COMPLETE_VAR = "_KUBECTL_MULTICLUSTER_COMPLETE"  # what typer reads to answer a completion request
