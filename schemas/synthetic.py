"""Settings of the synthetic recorder (``vla-data make-synthetic``)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.fixes import Fix, SettingsRefusal


class SourceFormat(StrEnum):
    hdf5 = "hdf5"  # one .h5 file per episode, as the ROS 2 teleop collector writes
    rosbag2 = "rosbag2"  # one ROS 2 bag folder per episode, as `ros2 bag record` writes


class SyntheticConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    episodes: int = Field(40, ge=0, description="Clean episodes to write.")
    height: int = Field(720, ge=16, description="Frame height in pixels.")
    width: int = Field(1280, ge=16, description="Frame width in pixels.")
    seed: int = 0
    defects: bool = Field(False, description="Also write one defective file per validation finding class.")
    no_instruction_ratio: float = Field(
        0.3, ge=0, le=1, description="Share of episodes written without language_instruction, as in older files."
    )
    noise: int = Field(3, ge=0, le=64, description="Sensor noise amplitude (grey levels); 0 gives identical still frames.")
    cameras: int = Field(
        1, ge=1, le=2,
        description="Cameras per episode: 1 (`images`, BGR, as the collector writes); 2 adds a side camera, a crop "
        "of the same scene shifted sideways, RGB under `observations/side_images`.",
    )

    format: SourceFormat = Field(
        SourceFormat.hdf5, description="hdf5: the collector's files; rosbag2: bags (sqlite3 and MCAP, Image bgr8 and "
        "CompressedImage jpeg by turns; the instruction on /instruction, in the metadata, in dataset_index.csv or "
        "only in the name).")

    @model_validator(mode="after")
    def _defects_need_company(self) -> SyntheticConfig:
        if self.defects and self.format == SourceFormat.rosbag2:
            raise SettingsRefusal("defects writes HDF5 files; the bag findings are tested with bags the tests write",
                                  Fix({"format": SourceFormat.hdf5.value}), Fix({"defects": False}))
        if self.defects and self.episodes < 2:
            raise SettingsRefusal("defects needs company: duplicates and odd frame sizes are judged against the other "
                                  "episodes", Fix({"episodes": 2}, "or more"))
        return self
