"""``python -m pipelines.cli`` (and ``torchrun -m pipelines.cli``) runs the ``vla-data`` command line."""

from pipelines.cli import main

main()
