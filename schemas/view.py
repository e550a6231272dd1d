"""`vla-data view`: which episodes a Rerun recording holds and how its frames are logged (see README, "view").

The recording's entity layout is ``pipelines.rerun_recording``'s; this model says only what the user chooses.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from schemas.store import Split


class ImageEncoding(StrEnum):
    jpeg = "jpeg"  # each frame JPEG-compressed: about 10x smaller recordings, for large inputs
    raw = "raw"  # each frame's pixels as they are: exact, for checking colours and preprocessing


class ViewOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    episodes: list[str] = Field(
        default_factory=list,
        description="Episodes to show: store episode ids, or source file names (with or without .h5); every one "
        "asked is shown. [default: the first max_episodes]")
    split: Split | None = Field(None, description="Only episodes of this store split. [default: every split]")
    max_episodes: int = Field(8, ge=1, description="Show at most this many episodes when none are named.")
    images: ImageEncoding = Field(ImageEncoding.jpeg, description="How frames are logged: jpeg (small) or raw (exact).")
    jpeg_quality: int = Field(90, ge=1, le=100, description="JPEG quality of logged frames (images=jpeg).")
