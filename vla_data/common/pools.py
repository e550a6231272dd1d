"""Where parallel work runs: a spawned local process pool (``workers``; spawn: workers start clean,
whatever threads the parent runs, and ignore Ctrl-C, which the parent alone handles) or the workers of a
running Dask cluster (``scheduler``, the ``[dask]`` extra), behind one ``concurrent.futures.Executor``.

``run_ordered`` and ``run_as_completed`` are the one way vla-data maps a function over items in parallel
(validation's files, a build's shards): in-process for ``workers <= 1``, else on ``executor``, with one Ctrl-C
behaviour for every caller: SIGINT is ignored in the workers and while the tasks are submitted (workers start
then, and inherit the ignore from their first instruction on), and on Ctrl-C the parent cancels the tasks not
started and waits for the running ones, so nothing a worker does outlives the call.

The process pool stays the local path rather than a ``LocalCluster``: benchmarks/scale.py measures a
LocalCluster started per build at 1.15-1.18x the pool's time on 2 cores (the goal was 1.10x), and the pool needs no
Dask installed.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

from vla_data.common.refusal import Fix, Refusal


def _ignore_interrupt() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class SchedulerError(Refusal, ValueError):
    """A Dask scheduler that cannot be used (not installed, not reachable); says which and what to do."""


LOCAL = Fix({"workers": "N", "scheduler": False}, "to build with local processes")


SCHEDULER_TIMEOUT = "10s"  # how long a build waits for a Dask scheduler to answer


def _client(scheduler: str):  # -> distributed.Client; Dask is an optional extra, imported only here
    """A client of the Dask scheduler at ``scheduler``, or a ``SchedulerError`` saying what to do."""
    try:
        from distributed import Client
    except ImportError as exc:
        raise SchedulerError(f"scheduler {scheduler}: Dask is not installed here; `pip install vla-data[dask]`",
                             LOCAL) from exc
    try:
        return Client(scheduler, timeout=SCHEDULER_TIMEOUT)
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


@contextmanager
def _interrupts_ignored() -> Iterator[None]:
    """SIGINT ignored in this process for the block (only the main thread may set handlers; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)


def _run_chunk(function: Callable[[T], R], chunk: Sequence[T]) -> list[R]:
    return [function(item) for item in chunk]


def _chunk_results(function: Callable[[T], R], items: Sequence[T], workers: int, scheduler: str | None,
                   chunksize: int, ordered: bool) -> Iterator[tuple[Sequence[T], list[R]]]:
    """Each chunk of ``items`` with ``function`` of its items, in order or as the chunks complete."""
    chunks = [items[i : i + chunksize] for i in range(0, len(items), max(1, chunksize))]
    if workers <= 1 and scheduler is None:
        for chunk in chunks:
            yield chunk, _run_chunk(function, chunk)
        return
    with executor(workers, scheduler) as pool:  # leaving it, also by Ctrl-C: unstarted cancelled, running waited for
        with _interrupts_ignored():
            futures = {pool.submit(_run_chunk, function, chunk): chunk for chunk in chunks}
        for future in futures if ordered else as_completed(futures):
            yield futures[future], future.result()


def run_ordered(function: Callable[[T], R], items: Sequence[T], workers: int, scheduler: str | None = None,
                chunksize: int = 1) -> Iterator[R]:
    """``function`` of each item, in the items' order: in-process for ``workers <= 1`` (and no ``scheduler``),
    else in ``workers`` spawned processes (or on the Dask cluster), ``chunksize`` items per task. ``function``
    and the items must be picklable."""
    for _, results in _chunk_results(function, items, workers, scheduler, chunksize, ordered=True):
        yield from results


def run_as_completed(function: Callable[[T], R], items: Sequence[T], workers: int, scheduler: str | None = None,
                     chunksize: int = 1) -> Iterator[tuple[T, R]]:
    """Each item with ``function`` of it, as they complete; otherwise as ``run_ordered``."""
    for chunk, results in _chunk_results(function, items, workers, scheduler, chunksize, ordered=False):
        yield from zip(chunk, results, strict=True)
