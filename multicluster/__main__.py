"""`python -m multicluster` runs the daemon's command line."""

from multicluster.cli import main

main()
