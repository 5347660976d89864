"""`python -m multicluster` runs the daemon's command line."""

from multicluster.cli import main

# Guarded: the SQLite writer process is started with multiprocessing's "spawn", which imports the parent's main
# module in the child under another name; unguarded, the child would start a second daemon.
if __name__ == "__main__":
    main()
