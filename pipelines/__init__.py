"""The jobs a user runs, and the `vla-data` command line."""
