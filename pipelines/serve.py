"""`vla-data serve`: a trained policy behind a websocket, msgpack with numpy arrays (``vla_client.protocol``).

One ``PolicyRunner`` per connection (one robot episode at a time per connection): each step runs the backbone
on the new frame(s) only. The policy is loaded once and runs in one thread of its own (the event loop keeps
serving while it computes); the steps of several robots that wait while it is busy go through the backbone as
one batch, each with its own instruction, and each runner then takes its own feature. Whatever a
client sends, the server answers (an error reply for a bad message; the connection stays usable) and never
dies of it; a client that vanishes frees its runner.

```python
with serving(policy, ServeConfig(port=0)) as server:   # in a background thread (tests, benchmarks, the demo)
    client = PolicyClient(server.url)
```
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import UnidentifiedImageError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from schemas import ColorOrder
from schemas.serve import ServeConfig, ServeMetadata
from schemas.train import Precision
from vla_client.preprocess import decode_rgb
from vla_client.protocol import (
    BAD_FRAME,
    BAD_REQUEST,
    CHUNK,
    CLIENT_MESSAGES,
    CLOSE,
    CLOSE_UNAUTHORIZED,
    ENCODINGS,
    HELLO,
    MALFORMED,
    NOT_RESET,
    PROTOCOL_VERSION,
    RESET,
    STEP,
    TOKEN_HEADER,
    ProtocolError,
    error,
    pack,
    unpack,
)
from vla_data import __version__
from vla_model.runtime import Policy, PolicyRunner

log = logging.getLogger("vla-data.serve")


def metadata(policy: Policy, precision: Precision, any_frame: bool = False) -> ServeMetadata:
    return ServeMetadata(
        protocol=PROTOCOL_VERSION, vla_data_version=__version__, checkpoint=str(policy.path),
        model=policy.meta.backbone.source, precision=precision, device=str(policy.device),
        cameras=policy.camera_names, color_orders={c: o.value for c, o in policy.color_orders().items()},
        image_size=policy.preprocessing.image_size, resize=policy.preprocessing.resize.value,
        source_frame_sizes=list(policy.meta.source_frame_sizes), any_frame=any_frame,
        window=policy.window, chunk=policy.chunk, action_offset=policy.spec.action_offset,
        action_names=policy.action_names, action_channels=list(policy.meta.actions.channels),
        action_levels=policy.teleop_levels(),
    )


@dataclass
class Robot:
    """One connection: its runner, and whether a frame served only for ``any_frame`` was logged yet."""

    runner: PolicyRunner
    peer: str
    told_any_frame: bool = False


class PolicyServer:
    def __init__(self, policy: Policy, config: ServeConfig, token: str | None = None) -> None:
        self.policy, self.config, self.token = policy, config, token
        self.metadata = metadata(policy, config.precision, config.any_frame).model_dump(mode="json")
        self.expected = policy.expected_frames
        # one policy, one thread that runs it (a thread per step would give each its own OpenMP team and
        # oversubscribe the cores); the steps waiting when it is free go through the backbone as one batch
        self.compute = ThreadPoolExecutor(1, thread_name_prefix="vla-data-policy")
        self._waiting: list[tuple[PolicyRunner, dict[str, np.ndarray], dict[str, ColorOrder], asyncio.Future]] = []
        self._batching: asyncio.Task | None = None
        self.batches: list[int] = []  # the size of each backbone call (the benchmark and tests read it)
        self.connections = 0

    # -- one connection ------------------------------------------------------------------------------------
    async def handle(self, connection: ServerConnection) -> None:
        peer = connection.remote_address
        if self.token is not None and connection.request is not None:
            given = connection.request.headers.get(TOKEN_HEADER, "")
            if given != f"Bearer {self.token}":
                log.warning("refused %s: %s token", peer, "a wrong" if given else "no")
                await connection.close(CLOSE_UNAUTHORIZED, "a missing or wrong token")
                return
        runner = self.policy.runner()
        robot = Robot(runner, str(peer))
        self.connections += 1
        log.info("robot %s connected (%d connected)", peer, self.connections)
        try:
            async for data in connection:
                try:
                    message = unpack(data)
                    reply = await self.answer(message, robot)
                except ProtocolError as exc:
                    message, reply = {}, error(exc.code, str(exc))
                except Exception as exc:  # a bug must not take the server down with it: said, and logged
                    log.exception("step failed for %s", peer)
                    message, reply = {}, error("internal", f"{type(exc).__name__}: {exc}")
                await connection.send(pack(reply))
                if message.get("type") == CLOSE:
                    break
        except ConnectionClosed:
            pass  # the robot went away: its runner goes with this function
        finally:
            self.connections -= 1
            log.info("robot %s disconnected", peer)

    async def answer(self, message: dict[str, Any], robot: Robot) -> dict[str, Any]:
        runner, kind = robot.runner, message["type"]
        if kind not in CLIENT_MESSAGES:
            raise ProtocolError(MALFORMED, f"unknown message type {kind!r}; one of {', '.join(CLIENT_MESSAGES)}")
        if kind == HELLO:
            return {"type": HELLO, "metadata": self.metadata}
        if kind == CLOSE:
            return {"type": CLOSE}
        if kind == RESET:
            instruction = message.get("instruction")
            if not isinstance(instruction, str) or not instruction.strip():
                raise ProtocolError(BAD_REQUEST, "reset needs an `instruction`, non-empty text")
            runner.reset(instruction)
            return {"type": RESET}
        assert kind == STEP
        if runner.instruction is None:
            raise ProtocolError(NOT_RESET, "step before reset: send reset with the instruction first")
        started = time.perf_counter()
        frames, orders = await asyncio.to_thread(self.frames, message.get("frames"))  # off the event loop
        self.check_sizes(frames, robot)
        decoded = time.perf_counter()
        chunk = await self._step(runner, frames, orders)
        done = time.perf_counter()
        return {"type": CHUNK, "chunk": chunk.astype(np.float32), "timestamp": message.get("timestamp"),
                "server_ms": {"decode": 1000 * (decoded - started), "policy": 1000 * (done - decoded),
                              "total": 1000 * (done - started)}}

    async def _step(self, runner: PolicyRunner, frames: dict[str, np.ndarray], orders: dict[str, ColorOrder]
                    ) -> np.ndarray:
        """Queue the step; the batching task runs every step waiting when the policy thread is free at once."""
        done: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._waiting.append((runner, frames, orders, done))
        if self._batching is None or self._batching.done():
            self._batching = asyncio.create_task(self._run_batches())
        return await done

    async def _run_batches(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                chunks = await loop.run_in_executor(self.compute, self._batch, batch)
            except Exception as exc:  # every step of the batch hears it (each answers its robot an error)
                for *_, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (*_, done), chunk in zip(batch, chunks, strict=True):
                if done.done():
                    continue  # its robot went away while it waited
                if isinstance(chunk, Exception):
                    done.set_exception(chunk)
                else:
                    done.set_result(chunk)

    def _batch(self, batch: list) -> list[np.ndarray | Exception]:
        """One backbone call for every waiting robot's frame (each with its own instruction), then each runner
        takes its feature: the same chunks as one step each, in fewer calls. A step whose frames cannot be
        prepared gets its own error; the others go on."""
        prepared: list[torch.Tensor | Exception] = []
        for runner, frames, orders, _ in batch:
            try:
                prepared.append(runner.prepare(frames, orders))
            except ValueError as exc:
                prepared.append(ProtocolError(BAD_FRAME, str(exc)))
        ready = [i for i, p in enumerate(prepared) if isinstance(p, torch.Tensor)]
        out: list[np.ndarray | Exception] = list(prepared)  # type: ignore[arg-type]
        if ready:
            self.batches.append(len(ready))
            features = self.policy.features(torch.cat([prepared[i] for i in ready]),  # type: ignore[misc]
                                            [batch[i][0].instruction for i in ready])
            for i, feature in zip(ready, features, strict=True):
                out[i] = batch[i][0].advance(feature)
        return out

    def frames(self, given: Any) -> tuple[dict[str, np.ndarray], dict[str, ColorOrder]]:
        """The step's frames by camera (raw arrays checked, encoded images decoded) and the colour order of
        those that are not in the camera's own (decoded images are RGB: passed as such, not flipped)."""
        if not isinstance(given, dict):
            raise ProtocolError(BAD_REQUEST, "step needs `frames`, a map of camera name -> frame")
        missing = [c for c in self.policy.camera_names if c not in given]
        if missing:
            raise ProtocolError(BAD_FRAME, f"no frame of camera(s) {', '.join(missing)}; the policy reads "
                                f"{', '.join(self.policy.camera_names)}")
        frames = {c: self._frame(c, given[c]) for c in self.policy.camera_names}
        return frames, {c: ColorOrder.rgb for c in frames if isinstance(given[c], dict)}

    def check_sizes(self, frames: dict[str, np.ndarray], robot: Robot) -> None:
        """Refuse a frame the policy was not trained to read (``vla_client.frames``); with ``any_frame``, act on
        it and log it, once per connection."""
        for camera, frame in frames.items():
            problem = self.expected.refusal(*frame.shape[:2])
            if problem is None:
                continue
            if not self.config.any_frame:
                raise ProtocolError(BAD_FRAME, f"camera {camera}: {problem} (a server started with --any-frame acts "
                                    "on it anyway)")
            if not robot.told_any_frame:
                robot.told_any_frame = True
                log.warning("robot %s, camera %s: %s; acting on it (--any-frame)", robot.peer, camera, problem)

    @staticmethod
    def _frame(camera: str, frame: Any) -> np.ndarray:
        if isinstance(frame, dict):
            if frame.get("encoding") not in ENCODINGS or not isinstance(frame.get("data"), bytes):
                raise ProtocolError(BAD_FRAME, f"camera {camera}: an encoded frame is {{encoding: jpeg|png, data}}")
            try:
                return decode_rgb(frame["data"])
            except (UnidentifiedImageError, OSError, ValueError) as exc:
                raise ProtocolError(BAD_FRAME, f"camera {camera}: cannot decode the {frame['encoding']} image "
                                    f"({exc})") from None
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
            what = f"{frame.shape} {frame.dtype}" if isinstance(frame, np.ndarray) else type(frame).__name__
            raise ProtocolError(BAD_FRAME, f"camera {camera}: a raw frame is (H, W, 3) uint8; got {what}")
        return frame

    def close(self) -> None:
        """After the server stopped: let the step in progress end, and the policy thread with it."""
        self.compute.shutdown(wait=True)

    # -- the server ----------------------------------------------------------------------------------------
    def serve(self, host: str, port: int) -> Any:
        """websockets' server (an async context manager) for this policy."""
        return serve(self.handle, host, port, max_size=int(self.config.max_message_mb * 2**20), compression=None)


def load_token(path: str | None) -> str | None:
    if path is None:
        return None
    token = Path(path).read_text().strip()
    if not token:
        raise ValueError(f"{path}: the token file is empty; write a shared secret into it")
    return token


class RunningServer:
    """A server running in a background thread (``serving``): its ``url``; stopped when the block ends."""

    def __init__(self, server: PolicyServer, config: ServeConfig) -> None:
        self.server, self.config = server, config
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self._stop: asyncio.Future[None] | None = None
        self._failed: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="vla-data-serve", daemon=True)

    @property
    def url(self) -> str:
        return f"ws://{self.config.host}:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as exc:  # reported to the thread that waits for the server to be ready
            self._failed = exc
            self.ready.set()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
            self.loop.close()

    async def _main(self) -> None:
        self._stop = self.loop.create_future()
        async with self.server.serve(self.config.host, self.config.port) as ws:
            ws_server: Server = ws
            self.port = ws_server.sockets[0].getsockname()[1]
            self.ready.set()
            await self._stop

    def start(self) -> RunningServer:
        self.thread.start()
        self.ready.wait(30)
        if self._failed is not None:
            raise self._failed
        return self

    def stop(self) -> None:
        if self._stop is not None and not self._stop.done():
            self.loop.call_soon_threadsafe(self._stop.set_result, None)
        self.thread.join(30)
        self.server.close()


@contextmanager
def serving(policy: Policy, config: ServeConfig, token: str | None = None) -> Iterator[RunningServer]:
    """Serve ``policy`` in a background thread for the block (``config.port`` 0: a free port, see ``.url``)."""
    running = RunningServer(PolicyServer(policy, config, token), config).start()
    try:
        yield running
    finally:
        running.stop()


def run_server(policy: Policy, config: ServeConfig, token: str | None, announce: Any) -> None:
    """Serve until Ctrl-C (or SIGTERM): then stop taking robots, let the running steps end, and return."""
    import signal

    async def main() -> None:
        server = PolicyServer(policy, config, token)
        stop = asyncio.get_running_loop().create_future()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
        async with server.serve(config.host, config.port) as ws:
            port = ws.sockets[0].getsockname()[1]
            announce(f"serving {policy.path} on ws://{config.host}:{port} ({server.metadata['device']}, "
                     f"{config.precision.value}; cameras {', '.join(policy.camera_names)}); Ctrl-C stops")
            await stop
        server.close()
        announce("stopped")

    asyncio.run(main())
