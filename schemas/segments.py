"""A segment: frames and actions one build wrote, never written again, referenced by every version that holds
its episodes (``segments/<id>/``, the id of the version whose build wrote it). Its ``segment.json`` is written
last: a segment without one is unfinished."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.store import Feature


class ImageSums(BaseModel):
    """Per-channel sums over an episode's uint8 RGB pixels (every camera): the train split's image stats are
    exact sums of these, so a change of membership recomputes them without reading a frame."""

    model_config = ConfigDict(extra="forbid")

    pixels: int
    total: list[float] = Field(min_length=3, max_length=3)
    total_sq: list[float] = Field(min_length=3, max_length=3)


class SegmentEpisode(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content_hash: str
    start: int = Field(ge=0, description="Its first frame in the segment's arrays.")
    n_frames: int = Field(ge=1)
    image: ImageSums


class SegmentRecord(BaseModel):
    """``segments/<id>/segment.json``: what the segment holds, every object's sha256; written last."""

    model_config = ConfigDict(extra="forbid")

    segment: str
    tool_version: str
    created: str
    n_frames: int
    features: list[Feature]
    episodes: list[SegmentEpisode]
    checksums: dict[str, str] = Field(description="sha256 of every object of the segment, by path inside it.")
