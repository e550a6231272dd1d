"""Where parallel build work runs: a spawned local process pool (``workers``; spawn: workers start clean,
whatever threads the parent runs, and ignore Ctrl-C, which the parent alone handles) or the workers of a
running Dask cluster (``scheduler``, the ``[dask]`` extra), behind one ``concurrent.futures.Executor``.

The process pool stays the local path rather than a ``LocalCluster``: benchmarks/scale.py measures a
LocalCluster started per build at 1.15-1.18x the pool's time on 2 cores (the goal was 1.10x), and the pool needs no
Dask installed.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager

from vla_data.common.refusal import Fix, Refusal


def _ignore_interrupt() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class SchedulerError(Refusal, ValueError):
    """A Dask scheduler that cannot be used (not installed, not reachable); says which and what to do."""


LOCAL = Fix({"workers": "N", "scheduler": False}, "to build with local processes")


def _client(scheduler: str):  # -> distributed.Client; Dask is an optional extra, imported only here
    """A client of the Dask scheduler at ``scheduler``, or a ``SchedulerError`` saying what to do."""
    try:
        from distributed import Client
    except ImportError as exc:
        raise SchedulerError(f"scheduler {scheduler}: Dask is not installed here; `pip install vla-data[dask]`",
                             LOCAL) from exc
    try:
        return Client(scheduler, timeout="10s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise SchedulerError(f"scheduler {scheduler}: no Dask scheduler answers there ({exc}); start one "
                             "(`dask scheduler`, and `dask worker ADDRESS` on each machine)", LOCAL) from exc


def check_scheduler(scheduler: str | None) -> None:
    """Refuse a scheduler that cannot be used before the build validates its sources or writes anything."""
    if scheduler is not None:
        _client(scheduler).close()


@contextmanager
def executor(workers: int, scheduler: str | None) -> Iterator[Executor]:
    """Where tasks run: a Dask cluster's workers (``scheduler``), or ``workers`` spawned local processes.
    Leaving it waits for the running tasks; the ones not started are cancelled when it is left by an error."""
    if scheduler is not None:
        client = _client(scheduler)
        dask = client.get_executor()
        try:
            yield dask
        except BaseException:
            dask.shutdown(wait=False)  # cancels what has not run; a running Dask task cannot be stopped
            raise
        finally:
            dask.shutdown(wait=True)
            client.close()
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_ignore_interrupt)
    try:
        yield pool
    finally:  # also on Ctrl-C, a failed task or the caller giving up: no local worker runs after this returns
        pool.shutdown(wait=True, cancel_futures=True)
