"""A camera's frames as LeRobot keeps video: AV1 (SVT-AV1) in mp4, yuv420p, a key frame every 2 frames, one
stream per camera holding episode after episode, frame i of a file at i / fps seconds (so an episode starts at
``from_timestamp`` = the frames before it / fps, as LeRobot's reader looks it up). PyAV (the ``lerobot`` extra)
encodes (and ``vla_data.sources.lerobot`` decodes) with the FFmpeg it bundles: nothing to install on the system.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from schemas.lerobot import CHUNKS_SIZE, VIDEO_FILE_MB, VIDEO_PATH
from vla_data.sources.lerobot import require_av

CODEC, DECODED_CODEC, PIX_FMT, GOP = "libsvtav1", "av1", "yuv420p", 2
SVT_PRESET = 10  # LeRobot asks for 12, which SVT-AV1 3.0 maps to 10
MIN_SIZE = 32  # SVT-AV1 3.0 dies of a floating point exception (the whole process) on smaller frames


def check_size(height: int, width: int, camera: str) -> None:
    """Refuse, before anything is encoded, frames SVT-AV1 cannot take."""
    if min(height, width) < MIN_SIZE:
        raise ValueError(f"camera {camera}: {height}x{width} frames are below the {MIN_SIZE}x{MIN_SIZE} the AV1 encoder "
                         "takes; export PNG images instead (exact, and small at this size)")


class CameraVideo:
    """One camera's mp4 files under a LeRobot folder, written episode after episode; a file is closed and the next
    begun when it reaches ``VIDEO_FILE_MB`` (an episode is never split)."""

    def __init__(self, root: Path, key: str, fps: int, crf: int) -> None:
        self.root, self.key, self.fps, self.crf = root, key, fps, crf
        self.index = 0  # files begun so far
        self.container = self.stream = None
        self.frames = 0  # frames in the current file
        self.path: Path | None = None

    def _open(self, height: int, width: int) -> None:
        av = require_av()
        self.path = self.root / VIDEO_PATH.format(video_key=self.key, chunk_index=self.index // CHUNKS_SIZE,
                                                  file_index=self.index % CHUNKS_SIZE)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(self.path), "w")
        self.stream = self.container.add_stream(CODEC, rate=self.fps, options={
            "g": str(GOP), "crf": str(self.crf), "preset": str(SVT_PRESET)})
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, PIX_FMT
        self.frames = 0

    def add(self, frames: np.ndarray) -> tuple[int, int, float, float]:
        """Append one episode's (n, H, W, 3) uint8 RGB frames -> (chunk index, file index, from and to timestamp)."""
        av = require_av()
        if self.container is not None and self._bytes() >= VIDEO_FILE_MB * 2**20:
            self.close()
            self.index += 1
        if self.container is None:
            self._open(frames.shape[1], frames.shape[2])
        start = self.frames
        for frame in frames:
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            picture.pts, picture.time_base = self.frames, Fraction(1, self.fps)
            self.container.mux(self.stream.encode(picture))
            self.frames += 1
        return (self.index // CHUNKS_SIZE, self.index % CHUNKS_SIZE, start / self.fps, self.frames / self.fps)

    def _bytes(self) -> int:
        """The current file's size so far: 0 until the encoder's first packet (SVT-AV1 holds back about 25 frames
        before it writes any, so after a short first episode the file does not exist yet)."""
        try:
            return self.path.stat().st_size if self.path is not None else 0
        except FileNotFoundError:
            return 0

    def close(self) -> None:
        if self.container is not None:
            self.container.mux(self.stream.encode())  # flush the encoder's delayed frames
            self.container.close()
            self.container = self.stream = None

    def info(self, height: int, width: int) -> dict[str, object]:
        """info.json's ``info`` of the camera's video feature."""
        return {"video.height": height, "video.width": width, "video.codec": DECODED_CODEC, "video.pix_fmt": PIX_FMT,
                "video.is_depth_map": False, "video.fps": self.fps, "video.channels": 3, "has_audio": False}
