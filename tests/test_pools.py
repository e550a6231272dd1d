"""vla_data.common.pools: the one way work is mapped over processes, with one Ctrl-C behaviour."""

from __future__ import annotations

import signal

from vla_data.common.pools import run_as_completed, run_ordered


def test_in_order_or_as_completed_in_process_or_in_workers_that_ignore_ctrl_c() -> None:
    items = list(range(7))
    assert list(run_ordered(abs, [-i for i in items], 1)) == items
    assert list(run_ordered(abs, [-i for i in items], 2, chunksize=3)) == items
    assert sorted(run_as_completed(abs, [-i for i in items], 2)) == sorted((-i, i) for i in items)
    def mine(*_: object) -> None:  # this process's own handler (the suite may run with SIGINT ignored)
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGINT, mine)
    try:
        assert set(run_ordered(signal.getsignal, [signal.SIGINT] * 3, 2)) == {signal.SIG_IGN}  # the parent alone has it
        assert signal.getsignal(signal.SIGINT) is mine  # restored here after submitting
    finally:
        signal.signal(signal.SIGINT, before)
