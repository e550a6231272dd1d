"""``PolicyClient``: the robot's connection to `vla-data serve`, synchronous, with timeouts and reconnects.

```python
client = PolicyClient("ws://gpu-box:8765", token="...")   # token only for a server started with --token-file
print(client.metadata["action_names"], client.metadata["window"])
client.reset("go to the bottle on the left")
chunk = client.step({"front": frame})                       # (K, A) float32, physical units
```
A connection lost between calls is opened again on the next call (``reconnects`` times): the server's runner
for it is new, so the client sends the last instruction again and the window starts over from the next frame,
as after ``reset``. A reply that takes longer than ``timeout`` seconds raises ``TimeoutError`` (the executor's
safety stop then holds the robot).
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import Any

import numpy as np
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

from vla_client.frames import ExpectedFrames, FrameCheck
from vla_client.protocol import (
    CHUNK,
    CLOSE,
    CLOSE_UNAUTHORIZED,
    ERROR,
    HELLO,
    RESET,
    STEP,
    TOKEN_HEADER,
    pack,
    unpack,
)

MAX_MESSAGE = 64 * 2**20  # a 720p raw frame is 2.7 MB; several cameras fit


class ServerError(RuntimeError):
    """The server answered with an error; ``code`` says which (``vla_client.protocol``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class Unauthorized(ConnectionError):
    """The server refused the connection's token."""


class PolicyClient:
    def __init__(self, url: str, token: str | None = None, timeout: float = 5.0, reconnects: int = 3,
                 retry_delay: float = 0.2) -> None:
        self.url, self.token, self.timeout = url, token, timeout
        self.reconnects, self.retry_delay = reconnects, retry_delay
        self.instruction: str | None = None
        self._connection: ClientConnection | None = None
        self._opened = ExitStack()  # the connection, entered as websockets wants it (a context manager)
        self._check = FrameCheck(ExpectedFrames(0))  # what hello says, set by _open
        self.metadata: dict[str, Any] = self._open()

    # -- the connection ------------------------------------------------------------------------------------
    def _open(self) -> dict[str, Any]:
        headers = {TOKEN_HEADER: f"Bearer {self.token}"} if self.token else None
        last: Exception | None = None
        for attempt in range(self.reconnects + 1):
            try:
                self._drop()
                self._connection = self._opened.enter_context(connect(
                    self.url, additional_headers=headers, open_timeout=self.timeout, max_size=MAX_MESSAGE,
                    compression=None, proxy=None))
                metadata = self._call({"type": HELLO}, HELLO)["metadata"]
                # a server from before the frame check says no sizes; one started with --any-frame acts on any
                self._check = FrameCheck(ExpectedFrames.from_metadata(metadata),
                                         "source_frame_sizes" in metadata and not metadata.get("any_frame"),
                                         self._check.warned)  # warned once per camera and size, reconnects too
                if self.instruction is not None:
                    self._call({"type": RESET, "instruction": self.instruction}, RESET)
                return metadata
            except Unauthorized:
                raise
            except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError) as exc:
                last = exc
                time.sleep(self.retry_delay * (attempt + 1))
            except InvalidURI as exc:
                raise ValueError(f"{self.url}: not a websocket URL (ws://host:port)") from exc
        raise ConnectionError(f"cannot reach the policy server at {self.url} ({type(last).__name__}: {last})")

    def _drop(self) -> None:
        """Close the connection, if any (a reconnect opens a new one)."""
        self._opened.close()
        self._opened, self._connection = ExitStack(), None

    def _call(self, message: dict[str, Any], expect: str) -> dict[str, Any]:
        assert self._connection is not None
        try:
            self._connection.send(pack(message))
            reply = unpack(self._connection.recv(timeout=self.timeout))
        except ConnectionClosed as exc:
            if exc.rcvd is not None and exc.rcvd.code == CLOSE_UNAUTHORIZED:
                raise Unauthorized(f"{self.url} refused the token: {exc.rcvd.reason}") from None
            raise
        if reply["type"] == ERROR:
            raise ServerError(str(reply.get("code")), str(reply.get("message")))
        if reply["type"] != expect:
            raise ServerError("unexpected", f"asked {message['type']}, the server answered {reply['type']}")
        return reply

    def _request(self, message: dict[str, Any], expect: str) -> dict[str, Any]:
        """Send and wait for the answer; a connection lost before it is opened again, once per call."""
        try:
            return self._call(message, expect)
        except ConnectionClosed:
            self.metadata = self._open()
            return self._call(message, expect)

    # -- the calls -----------------------------------------------------------------------------------------
    def reset(self, instruction: str) -> None:
        """Start an episode with this instruction."""
        self._request({"type": RESET, "instruction": instruction}, RESET)
        self.instruction = instruction

    def step(self, frames: dict[str, Any] | np.ndarray, timestamp: float | None = None) -> np.ndarray:
        """One frame per camera (a dict by camera name; a bare array for a one-camera policy), each a raw
        (H, W, 3) uint8 array or ``protocol.encoded("jpeg", data)`` -> the (K, A) chunk, physical units."""
        chunk, _ = self.step_timed(frames, timestamp)
        return chunk

    def step_timed(self, frames: dict[str, Any] | np.ndarray, timestamp: float | None = None
                   ) -> tuple[np.ndarray, dict[str, float]]:
        """As ``step``, and the server's timing (milliseconds: decode, policy, total)."""
        if not isinstance(frames, dict):
            cameras = self.metadata["cameras"]
            if len(cameras) != 1:
                raise ValueError(f"the policy reads cameras {', '.join(cameras)}: give the frames as a dict")
            frames = {cameras[0]: frames}
        self.check(frames)
        stamp = time.time() if timestamp is None else float(timestamp)
        reply = self._request({"type": STEP, "frames": frames, "timestamp": stamp}, CHUNK)
        return np.asarray(reply["chunk"], np.float32), dict(reply.get("server_ms", {}))

    def check(self, frames: dict[str, Any]) -> None:
        """Check raw frames against what the policy was trained on (``hello``; ``vla_client.frames.FrameCheck``):
        ``ValueError`` for one the server would refuse, a ``FrameWarning`` once per camera and size for another
        aspect ratio than in training. Encoded frames are checked by the server."""
        self._check(frames, stacklevel=5)  # the caller of step

    def close(self) -> None:
        if self._connection is None:
            return
        try:
            self._call({"type": CLOSE}, CLOSE)
        except (ConnectionClosed, OSError, TimeoutError, ServerError):
            pass
        self._drop()

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
