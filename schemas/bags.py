"""How a ROS 2 bag (rosbag2: a folder with ``metadata.yaml``, or one ``.mcap`` file) becomes episodes: the
command topic and its action fields, where the instruction comes from, which clock aligns commands to frames,
how a bag is cut into episodes.
The camera topics are the cameras' (``CameraSource.topic``).

Frames are the clock: the action row of frame t is the last command stamped at or before frame t's stamp,
zero before the first command and once the last command is older than ``command_timeout_s`` (the base stops
when commands stop). This is the HDF5 recorder's own convention (the command sent, then the frame grabbed), so
the window's action offset keeps its meaning. A bag is one episode, or is cut into several (``cut``); the
episode ``k`` (from 1) of a cut bag is named ``BAG#k`` wherever an episode is named by its path.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, field_validator, model_serializer
from pydantic import model_validator

EVENT_START, EVENT_END = "episode_start", "episode_end"
PART_MARK = "#"  # BAG#k: the k-th episode (from 1) of a bag cut into several
DEFAULT_CAMERA_TOPIC = "/camera/image_raw"
# The fields of a geometry_msgs/Twist (or TwistStamped's .twist) that give the recorder's three channels.
DEFAULT_COMMAND_FIELDS = ("linear.x", "linear.y", "angular.z")
TWIST_FIELDS = tuple(f"{group}.{axis}" for group in ("linear", "angular") for axis in ("x", "y", "z"))
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
TWIST_TYPE = "geometry_msgs/msg/Twist"
TWIST_STAMPED_TYPE = "geometry_msgs/msg/TwistStamped"
STRING_TYPE = "std_msgs/msg/String"
CAMERA_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
COMMAND_TYPES = (TWIST_TYPE, TWIST_STAMPED_TYPE)


class StampSource(StrEnum):
    header = "header"  # the message's header stamp; the receive time where a message has none or it is zero
    receive = "receive"  # the time the recorder received the message (the bag's own timestamp)


class EpisodeCut(StrEnum):
    bag = "bag"  # one bag = one episode
    events = "events"  # episodes start (and end) at messages on ``events_topic``
    gap = "gap"  # a pause in the commands longer than ``gap_s`` separates two episodes


class BagSettings(BaseModel):
    """What a recorder's ROS 2 bags hold and how they become episodes. Defaults: ``ros2 bag record
    /camera/image_raw /cmd_vel`` of a Twist teleop."""

    model_config = ConfigDict(extra="forbid")

    command_topic: str = Field("/cmd_vel", min_length=1,
                               description="The topic of the velocity commands (geometry_msgs/Twist or TwistStamped).")
    command_fields: tuple[str, ...] = Field(
        DEFAULT_COMMAND_FIELDS, min_length=1,
        description="The Twist fields that are the action channels, in order (e.g. linear.x,linear.y,angular.z).")
    instruction_topic: str = Field("/instruction", min_length=1,
                                   description="A std_msgs/String topic holding the episode's instruction, if recorded.")
    instruction_metadata_key: str = Field(
        "instruction", min_length=1, description="The key of the instruction in the bag's metadata (custom_data).")
    stamp: StampSource = Field(StampSource.header, description="Which time stamps align commands to frames.")
    command_timeout_s: float = Field(0.5, gt=0, description="Seconds: a command older than this at a frame counts as "
                                     "stopped (zero velocity), as the base stops when commands stop.")
    fps: float | None = Field(None, gt=0, description="Keep at most this many frames per second (None: every frame).")
    cut: EpisodeCut = Field(EpisodeCut.bag, description="How a bag is cut into episodes: bag (one bag, one episode), "
                            "events (at messages on the events topic) or gap (at pauses in the commands).")
    events_topic: str = Field("/episode_event", min_length=1, description="cut=events: a std_msgs/String topic; "
                              "`episode_start` starts an episode, `episode_end` ends one.")
    gap_s: float = Field(2.0, gt=0, description="cut=gap: seconds without a command that separate two episodes "
                         "(cut in the middle of the pause).")

    @model_serializer(mode="wrap")
    def _given_fields_only(self, handler: SerializerFunctionWrapHandler) -> dict:
        """``command_fields`` is written only where it was given: its default means "the first action_dim of
        linear.x, linear.y, angular.z", which a written default would turn into three fields given (a report or
        settings file read back with another action_dim would then be refused)."""
        data = handler(self)
        if "command_fields" not in self.model_fields_set:
            data.pop("command_fields", None)
        return data

    @field_validator("command_fields")
    @classmethod
    def _twist_fields(cls, fields: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [f for f in fields if f not in TWIST_FIELDS]
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not Twist fields; choose from {', '.join(TWIST_FIELDS)}")
        if len(set(fields)) != len(fields):
            raise ValueError(f"{', '.join(fields)} names a field twice")
        return fields

    @model_validator(mode="after")
    def _distinct_topics(self) -> BagSettings:
        topics = [self.command_topic, self.instruction_topic] + ([self.events_topic] if self.cut == EpisodeCut.events else [])
        if len(set(topics)) != len(topics):
            raise ValueError(f"the command, instruction and events topics must differ ({', '.join(topics)})")
        if self.cut == EpisodeCut.gap and self.gap_s <= self.command_timeout_s:
            raise ValueError(f"gap_s {self.gap_s:g} must be longer than the command timeout {self.command_timeout_s:g} s: "
                             "a shorter pause is a stop within one episode")
        return self
