"""Chunks to commands on the robot: first, chunk:n, ensemble, async; snapping; the safety stop."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from vla_client.execution import Driver, ExecutionMode, Executor, Mode, Snap


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def chunk(start: float, k: int = 4) -> np.ndarray:
    """A (K, 1) chunk whose k-th action is start + k: each action names the tick it is for."""
    return (start + np.arange(k, dtype=np.float32))[:, None]


def test_modes_parse_and_refuse_nonsense() -> None:
    assert ExecutionMode.parse("chunk:3") == ExecutionMode(Mode.chunk, 3)
    assert ExecutionMode.parse("async") == ExecutionMode(Mode.asynchronous, 1)
    for bad in ("chunk", "chunk:0", "first:2", "dance", "chunk:x"):
        with pytest.raises(ValueError, match="execution mode"):
            ExecutionMode.parse(bad)


def test_first_executes_the_first_action_of_every_new_chunk() -> None:
    ex = Executor(ExecutionMode.parse("first"), clock=Clock())
    for t in range(3):
        assert ex.wants_chunk()
        ex.add(chunk(10 * t), stamp=0)
        assert ex.act()[0] == 10 * t


def test_chunk_n_runs_n_actions_open_loop_then_asks_again() -> None:
    ex = Executor(ExecutionMode.parse("chunk:3"), clock=Clock())
    done = []
    for _ in range(6):
        if ex.wants_chunk():
            ex.add(chunk(100 * len(done)), stamp=0)
            done.append("ask")
        done.append(float(ex.act()[0]))
    assert done == ["ask", 0.0, 1.0, 2.0, "ask", 400.0, 401.0, 402.0]


def test_ensemble_averages_every_chunks_prediction_for_the_tick_with_act_weights() -> None:
    ex = Executor(ExecutionMode.parse("ensemble"), decay=0.5, clock=Clock())
    got = []
    for t in range(3):
        ex.add(chunk(0) + 10 * t, stamp=0)  # chunk t predicts tick t+k as 10 t + k
        got.append(float(ex.act()[0]))
    # tick 2: chunk 0 says 2, chunk 1 says 11, chunk 2 says 20; weights exp(-0.5 i), i = 0 the oldest
    w = np.exp(-0.5 * np.arange(3))
    assert got[0] == 0 and math.isclose(got[1], (1 * w[0] + 10 * w[1]) / w[:2].sum(), rel_tol=1e-6)
    assert math.isclose(got[2], float((np.array([2, 11, 20]) * w).sum() / w.sum()), rel_tol=1e-6)


def test_async_asks_before_the_queue_runs_out_and_skips_the_ticks_that_passed() -> None:
    ex = Executor(ExecutionMode.parse("async:2"), clock=Clock())
    ex.add(chunk(0, 5), stamp=0)
    out = [float(ex.act()[0]) for _ in range(2)]
    assert out == [0.0, 1.0] and not ex.wants_chunk()
    out.append(float(ex.act()[0]))
    assert ex.wants_chunk()  # 2 actions left
    frame_tick = ex.tick
    out.append(float(ex.act()[0]))  # the request is in flight; the queue goes on
    ex.add(chunk(100, 5), stamp=0, ticks_since_frame=ex.tick - frame_tick)  # its frame was 1 tick ago
    out.append(float(ex.act()[0]))
    assert out == [0.0, 1.0, 2.0, 3.0, 101.0]  # the new chunk's action 0 was for the tick already done


def test_the_safety_stop_gives_zero_velocity_without_a_fresh_chunk() -> None:
    clock = Clock()
    ex = Executor(ExecutionMode.parse("chunk:4"), deadline=0.5, clock=clock)
    ex.add(np.full((4, 2), 1.15, np.float32), stamp=0.0)
    assert ex.act().tolist() == pytest.approx([1.15, 1.15])
    clock.now = 0.6  # the frame the chunk came from is older than the deadline
    assert ex.act().tolist() == [0.0, 0.0] and ex.stops == 1
    ex = Executor(ExecutionMode.parse("chunk:2"), clock=Clock())
    ex.add(np.ones((2, 2), np.float32), stamp=0)
    ex.act(), ex.act()
    assert ex.act().tolist() == [0.0, 0.0]  # ran out, and nobody asked again: stop


def test_snap_rounds_to_the_teleop_levels_with_a_dead_band() -> None:
    snap = Snap.from_metadata({"action_names": ["vx", "vy"], "action_levels": {"vx": [-1.15, 0.0, 1.15],
                                                                                "vy": [-1.15, 0.0, 1.15]}})
    assert snap(np.array([0.9, -0.2], np.float32)).tolist() == pytest.approx([1.15, 0.0])
    assert snap(np.array([-0.5, 0.25], np.float32)).tolist() == pytest.approx([-1.15, 0.0])  # beyond the band: moving
    ex = Executor(ExecutionMode.parse("first"), snap=snap, clock=Clock())
    ex.add(np.array([[0.8, -0.9]], np.float32), stamp=0)
    assert ex.act().tolist() == pytest.approx([1.15, -1.15])


class SlowClient:
    """A client whose every step takes ``delay`` seconds (as over a slow link) or fails."""

    def __init__(self, delay: float, fail: bool = False) -> None:
        self.delay, self.fail, self.calls = delay, fail, 0

    def step(self, frames: object) -> np.ndarray:
        self.calls += 1
        time.sleep(self.delay)
        if self.fail:
            raise TimeoutError("no reply")
        return chunk(100 * self.calls, 6)


def test_the_async_driver_keeps_executing_while_a_request_is_in_flight() -> None:
    client = SlowClient(0.2)
    driver = Driver(client, Executor(ExecutionMode.parse("async:3"), action_dim=1, deadline=5.0))
    assert driver.tick(None).tolist() == [0.0]  # no chunk yet: zero velocity while the first request is in flight
    driver.wait()
    commands = []
    for _ in range(6):
        commands.append(float(driver.tick(None)[0]))
        time.sleep(0.01)
    assert commands[0] == 101.0  # the first chunk, less the tick that passed while it was computed
    assert client.calls == 2 and len(set(commands)) == len(commands)  # asked again before running out, never stalled


def test_a_failing_server_ends_in_the_safety_stop() -> None:
    driver = Driver(SlowClient(0.0, fail=True), Executor(ExecutionMode.parse("first"), action_dim=2))
    assert driver.tick(None).tolist() == [0.0, 0.0] and len(driver.errors) == 1 and driver.executor.stops == 1
    with pytest.raises(RuntimeError, match="no action_dim"):
        Executor(ExecutionMode.parse("first")).act()
