"""From chunks to commands: a chunk is K future actions, the robot executes one action per control tick.

```python
executor = Executor(ExecutionMode.parse("ensemble"), deadline=0.5, snap=Snap.from_metadata(client.metadata))
driver = Driver(client, executor, asynchronous=False)
while robot.running:                      # at the control rate
    command = driver.tick(camera.read())  # (A,) physical units, zero velocity on the safety stop
    robot.send(command)
```
Modes (``ExecutionMode``):
- ``first``: ask for a chunk every tick and execute its first action (closed loop, one request per tick).
- ``chunk:n``: execute the first n actions of a chunk open-loop, one per tick, then ask again.
- ``ensemble``: ask every tick; the action for a tick is the average of every chunk's prediction for that
  tick, weighted exp(-decay * i) with i = 0 for the oldest chunk (ACT's temporal ensembling).
- ``async``: keep executing the queued chunk while the next request is in flight (``Driver(asynchronous=True)``);
  a new chunk replaces the queue, less the ticks that passed since its frame was taken.
The safety stop: when the chunk in use came from a frame older than ``deadline`` seconds (no fresh chunk:
the server is slow, gone, or refused), or the queue ran out, the command is zero velocity.
``Snap`` rounds each executed action to the levels the robot was driven with (e.g. -1.15, 0, +1.15), with a
dead band around 0. Pure numpy: runs on the robot computer.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np


class Mode(str, Enum):
    first = "first"
    chunk = "chunk"
    ensemble = "ensemble"
    asynchronous = "async"


@dataclass(frozen=True)
class ExecutionMode:
    mode: Mode
    n: int = 1  # chunk:n's open-loop actions; async: ask again when this many are left

    @classmethod
    def parse(cls, text: str) -> ExecutionMode:
        """``first``, ``chunk:N``, ``ensemble`` or ``async`` (``async:N``: ask again with N actions left)."""
        name, _, count = text.partition(":")
        try:
            mode = Mode(name)
        except ValueError:
            raise ValueError(f"execution mode {text!r}: one of first, chunk:N, ensemble, async") from None
        if mode in (Mode.first, Mode.ensemble) and count:
            raise ValueError(f"execution mode {text!r}: {name} takes no count")
        n = int(count) if count.isdigit() else (None if count else 1)
        if n is None or n < 1 or (mode == Mode.chunk and not count):
            raise ValueError(f"execution mode {text!r}: give a positive count, e.g. chunk:4")
        return cls(mode, n)


@dataclass(frozen=True)
class Snap:
    """Executed actions snapped to each channel's levels: |value| < dead_band is 0, anything beyond moves, at the
    nearest non-zero level of its sign (a teleop key is pressed or not: -1.15, 0 or +1.15)."""

    levels: tuple[tuple[float, ...], ...]
    dead_band: float = 0.3

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any], dead_band: float = 0.3) -> Snap:
        """The levels the server reports (``action_levels``: min, 0, max of the train split per channel)."""
        return cls(tuple(tuple(metadata["action_levels"][n]) for n in metadata["action_names"]), dead_band)

    def __call__(self, action: np.ndarray) -> np.ndarray:
        out = np.empty_like(action)
        for c, (value, levels) in enumerate(zip(action, self.levels, strict=True)):
            moving = [v for v in levels if v != 0 and (v > 0) == (value > 0)] or list(levels)
            out[c] = 0.0 if abs(value) < self.dead_band else min(moving, key=lambda v: abs(v - value))
        return out


@dataclass
class _Chunk:
    actions: np.ndarray  # (K, A)
    stamp: float  # when its frame was taken
    tick: int  # the tick its first action is for


@dataclass
class Executor:
    """One command per ``act`` (a control tick) from the chunks ``add``-ed; see the module doc."""

    mode: ExecutionMode
    action_dim: int | None = None  # the width of the zero command before any chunk came [default: a chunk's]
    deadline: float = 0.5
    snap: Snap | None = None
    decay: float = 0.1
    clock: Callable[[], float] = time.monotonic
    tick: int = 0
    stops: int = 0  # ticks that commanded zero velocity for want of a fresh chunk
    _chunks: deque[_Chunk] = field(default_factory=deque)

    def wants_chunk(self) -> bool:
        """Whether a new chunk should be asked for before this tick's command."""
        if not self._chunks or self.mode.mode in (Mode.first, Mode.ensemble):
            return True
        last = self._chunks[-1]
        used = self.tick - last.tick  # of its actions, executed (or skipped) already
        if self.mode.mode == Mode.chunk:
            return used >= min(self.mode.n, len(last.actions))
        return len(last.actions) - used <= self.mode.n  # async: before the queue runs out

    def add(self, actions: np.ndarray, stamp: float, ticks_since_frame: int = 0) -> None:
        """A chunk computed from the frame taken at ``stamp`` (clock time), ``ticks_since_frame`` ticks ago."""
        chunk = _Chunk(np.asarray(actions, np.float32), stamp, self.tick - ticks_since_frame)
        if self.mode.mode == Mode.ensemble:
            self._chunks.append(chunk)
            while self._chunks and self._chunks[0].tick + len(self._chunks[0].actions) <= self.tick:
                self._chunks.popleft()
        else:
            self._chunks = deque([chunk])

    def act(self) -> np.ndarray:
        """This tick's command, physical units; zero velocity on the safety stop."""
        now, tick = self.clock(), self.tick
        self.tick += 1
        live = [c for c in self._chunks if 0 <= tick - c.tick < len(c.actions)]
        fresh = [c for c in live if now - c.stamp <= self.deadline]
        if self.mode.mode != Mode.ensemble:
            fresh = fresh[-1:]
        if not fresh:
            self.stops += 1
            width = self._chunks[-1].actions.shape[1] if self._chunks else self.action_dim
            if width is None:
                raise RuntimeError("no chunk yet and no action_dim: the zero command has no width")
            return np.zeros(width, np.float32)
        if self.mode.mode == Mode.ensemble:  # oldest first, weight exp(-decay * i)
            weights = np.array([math.exp(-self.decay * i) for i in range(len(fresh))])
            rows = np.stack([c.actions[tick - c.tick] for c in fresh])
            action = (weights[:, None] * rows).sum(0) / weights.sum()
        else:
            action = fresh[-1].actions[tick - fresh[-1].tick]
        action = np.asarray(action, np.float32)
        return self.snap(action) if self.snap is not None else action


class Driver:
    """Runs an ``Executor`` against a ``PolicyClient``: ``tick(frames)`` asks for a chunk when the executor wants
    one (waiting for it, or, ``asynchronous``, in the background while the queued actions go on) and returns
    the tick's command. A failed or late request leaves the executor without a fresh chunk: its safety stop."""

    def __init__(self, client: Any, executor: Executor, asynchronous: bool | None = None) -> None:
        self.client, self.executor = client, executor
        metadata = getattr(client, "metadata", None)
        if executor.action_dim is None and isinstance(metadata, dict) and "action_names" in metadata:
            executor.action_dim = len(metadata["action_names"])  # the zero command is right from the first tick
        self.asynchronous = executor.mode.mode == Mode.asynchronous if asynchronous is None else asynchronous
        self.errors: list[Exception] = []
        self._pending: threading.Thread | None = None
        self._result: tuple[np.ndarray, float, int] | None = None

    def _request(self, frames: Any, stamp: float, tick: int) -> None:
        try:
            self._result = (self.client.step(frames), stamp, tick)
        except Exception as exc:  # a timeout or a lost server: the safety stop takes over
            self.errors.append(exc)

    def tick(self, frames: Any) -> np.ndarray:
        ex = self.executor
        if self._result is not None:
            actions, stamp, tick = self._result
            self._result = None
            ex.add(actions, stamp, ticks_since_frame=ex.tick - tick)
        if ex.wants_chunk() and (self._pending is None or not self._pending.is_alive()):
            stamp = ex.clock()
            if self.asynchronous:
                self._pending = threading.Thread(target=self._request, args=(frames, stamp, ex.tick), daemon=True)
                self._pending.start()
            else:
                self._request(frames, stamp, ex.tick)
                if self._result is not None:
                    actions, stamp, _ = self._result
                    self._result = None
                    ex.add(actions, stamp)
        return ex.act()

    def wait(self) -> None:
        """Wait for a request in flight (the end of an episode, tests)."""
        if self._pending is not None:
            self._pending.join()
