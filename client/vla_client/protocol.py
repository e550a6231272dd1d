"""The wire protocol of `vla-data serve`: msgpack maps over a websocket, numpy arrays inside them.

Every message is a map with a ``type``. The robot (client) sends, the server answers each one:

| client sends                                        | server answers                                          |
|-----------------------------------------------------|---------------------------------------------------------|
| ``{"type": "hello"}``                               | ``{"type": "hello", "metadata": {...}}`` (``Metadata``)  |
| ``{"type": "reset", "instruction": str}``           | ``{"type": "reset"}``                                   |
| ``{"type": "step", "frames": {camera: frame}, "timestamp": float}`` | ``{"type": "chunk", "chunk": (K, A) float32, "timestamp": float, "server_ms": {...}}`` |
| ``{"type": "close"}``                               | ``{"type": "close"}``, then the server closes            |

A frame is a raw (H, W, 3) uint8 array in the camera's colour order, or an encoded image,
``{"encoding": "jpeg" | "png", "data": bytes}`` (e.g. a ROS ``CompressedImage``'s data as it is; decoded
images are RGB). Anything the server cannot use is answered ``{"type": "error", "code": ..., "message": ...}``
and the connection stays usable. Arrays travel as ``{"__ndarray__": true, "dtype", "shape", "data"}``;
object arrays are refused both ways (they would need pickle).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

PROTOCOL_VERSION = 1
HELLO, RESET, STEP, CHUNK, CLOSE, ERROR = "hello", "reset", "step", "chunk", "close", "error"
CLIENT_MESSAGES = (HELLO, RESET, STEP, CLOSE)
ENCODINGS = ("jpeg", "png")
TOKEN_HEADER = "Authorization"  # "Bearer <token>", checked at connect by a server started with --token-file
CLOSE_UNAUTHORIZED = 4001  # the websocket close code of a connection refused for its token

# error codes (``{"type": "error", "code": ...}``)
MALFORMED = "malformed"  # not a msgpack map with a known type
BAD_FRAME = "bad_frame"  # a frame of the wrong shape, dtype, encoding or size (vla_client.frames), or a camera missing
NOT_RESET = "not_reset"  # step before reset
BAD_REQUEST = "bad_request"  # a field missing or of the wrong kind


class ProtocolError(ValueError):
    """A message that is not what the protocol says; ``code`` is one of the error codes above."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class EncodedFrame:
    """An already encoded frame: ``jpeg`` or ``png`` bytes (e.g. a ROS CompressedImage's ``data``)."""

    encoding: str
    data: bytes

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding {self.encoding!r}: one of {', '.join(ENCODINGS)}")


def _encode(obj: Any) -> Any:
    if isinstance(obj, EncodedFrame):
        return {"encoding": obj.encoding, "data": bytes(obj.data)}
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "O":
            raise TypeError("object arrays cannot be sent")
        return {"__ndarray__": True, "dtype": obj.dtype.str, "shape": list(obj.shape),
                "data": np.ascontiguousarray(obj).tobytes()}
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot send {type(obj).__name__}")


def _decode(obj: dict) -> Any:
    if obj.get("__ndarray__") is True:
        dtype = np.dtype(obj["dtype"])
        if dtype.kind == "O":
            raise ProtocolError(MALFORMED, "object arrays are not accepted")
        return np.frombuffer(obj["data"], dtype=dtype).reshape(obj["shape"])
    return obj


def pack(message: dict[str, Any]) -> bytes:
    """One message as msgpack bytes (numpy arrays included)."""
    return msgpack.packb(message, default=_encode, use_bin_type=True)


def unpack(data: bytes | str) -> dict[str, Any]:
    """One message from msgpack bytes; ``ProtocolError`` (``malformed``) when it is not a map with a type."""
    if isinstance(data, str):
        raise ProtocolError(MALFORMED, "text frames are not messages: send msgpack in binary frames")
    try:
        message = msgpack.unpackb(data, object_hook=_decode, raw=False, strict_map_key=False)
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises several kinds for bad bytes, numpy for a bad shape or dtype
        raise ProtocolError(MALFORMED, f"not a msgpack message ({type(exc).__name__}: {exc})") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError(MALFORMED, "a message is a map with a `type`")
    return message


def error(code: str, message: str) -> dict[str, Any]:
    return {"type": ERROR, "code": code, "message": message}


def encoded(encoding: str, data: bytes) -> EncodedFrame:
    """An already encoded frame (``jpeg`` or ``png`` bytes), e.g. a ROS CompressedImage's ``data``."""
    return EncodedFrame(encoding, bytes(data))
