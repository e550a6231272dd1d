"""A ROS 2 node that drives a robot from a policy: camera frames in, geometry_msgs/Twist on /cmd_vel out.

The policy is served by `vla-data serve` on a GPU box (``url``), or runs on the robot computer itself from a folder
`vla-data export` wrote (``policy``: onnxruntime, no torch, no network link to lose). Run it on the robot (ROS 2
sourced, Humble or later):

    pip install ./client
    python examples/ros2_policy_node.py --ros-args -p url:=ws://gpu-box:8765 -p instruction:="go to the bottle"

    pip install "./client[onnx]"
    python examples/ros2_policy_node.py --ros-args -p policy:=/opt/policy -p providers:=tensorrt,cuda,cpu \
        -p instruction:="go to the bottle"

Parameters (``-p name:=value``):
  url          ws://host:port of `vla-data serve`                         (ws://localhost:8765)
  policy       instead of url: a folder `vla-data export` wrote, run here   ('')
  providers    with policy: onnxruntime providers, in order (cpu, cuda, tensorrt) (cpu)
  token_file   a file with the server's --token-file secret, or ''        ('')
  instruction  the episode's instruction                                  (required)
  camera       the policy's camera this topic feeds; '' = its only camera ('')
  topic        the camera topic                                           (/camera/image_raw)
  compressed   true: the topic is sensor_msgs/CompressedImage (jpeg/png, passed through undecoded);
               false: sensor_msgs/Image (bgr8, rgb8, bgra8, rgba8, mono8)   (false)
  rate_hz      the control rate: one Twist per tick (a float: 10.0)       (10.0)
  mode         execution mode: first, chunk:N, ensemble or async          (ensemble)
  deadline     seconds a chunk (and the latest frame) stays usable; older: zero velocity (0.5)
  snap         snap commands to the levels the robot was driven with      (true)

No frame yet, a frame older than ``deadline``, or no fresh chunk (server slow or gone): the tick publishes zero
velocity. On shutdown (Ctrl-C) the node publishes a zero Twist before it exits.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from vla_client.client import PolicyClient
from vla_client.local import LocalPolicy
from vla_client.execution import Driver, ExecutionMode, Executor, Snap
from vla_client.ros import fill_twist, to_frame


def main(args: list[str] | None = None) -> None:
    import rclpy
    from geometry_msgs.msg import Twist
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage, Image

    class PolicyNode(Node):
        def __init__(self) -> None:
            super().__init__("vla_policy")
            p = {name: self.declare_parameter(name, default).value for name, default in [
                ("url", "ws://localhost:8765"), ("policy", ""), ("providers", "cpu"), ("token_file", ""),
                ("instruction", ""), ("camera", ""),
                ("topic", "/camera/image_raw"), ("compressed", False), ("rate_hz", 10.0), ("mode", "ensemble"),
                ("deadline", 0.5), ("snap", True)]}
            if not p["instruction"]:
                raise SystemExit("give the instruction: --ros-args -p instruction:=\"...\"")
            token = Path(p["token_file"]).read_text().strip() if p["token_file"] else None
            if p["policy"]:  # on this computer: the same calls as the server's client
                self.client: PolicyClient | LocalPolicy = LocalPolicy(p["policy"], providers=p["providers"].split(","))
                source = f"{p['policy']} ({', '.join(self.client.providers)})"
            else:
                self.client, source = PolicyClient(p["url"], token=token), p["url"]
            meta = self.client.metadata
            self.camera = p["camera"] or meta["cameras"][0]
            if self.camera not in meta["cameras"] or (not p["camera"] and len(meta["cameras"]) != 1):
                raise SystemExit(f"camera {self.camera!r}: the policy reads {meta['cameras']}; set -p camera:=")
            self.order, self.names = meta["color_orders"][self.camera], meta["action_names"]
            fill_twist(Twist(), [0.0] * len(self.names), self.names)  # the action names are Twist fields
            executor = Executor(ExecutionMode.parse(p["mode"]), deadline=p["deadline"],
                                snap=Snap.from_metadata(meta) if p["snap"] else None)
            self.driver = Driver(self.client, executor)
            self.deadline = p["deadline"]
            self.client.reset(p["instruction"])
            self.latest: tuple[object, float] | None = None  # (message, when it arrived)
            self.cmd = self.create_publisher(Twist, "/cmd_vel", 10)
            kind = CompressedImage if p["compressed"] else Image
            self.create_subscription(kind, p["topic"], self.on_frame, qos_profile_sensor_data)
            self.create_timer(1.0 / p["rate_hz"], self.on_tick)
            self.get_logger().info(f"{source}: {self.camera} <- {p['topic']} ({kind.__name__}), "
                                   f"{p['mode']} at {p['rate_hz']} Hz, actions {self.names}")

        def on_frame(self, msg: object) -> None:
            self.latest = (msg, time.monotonic())  # converted on the tick: only the frames used are

        def on_tick(self) -> None:
            if self.latest is None or time.monotonic() - self.latest[1] > self.deadline:
                self.publish([0.0] * len(self.names))  # no camera: stop, and don't ask the policy
                return
            errors = len(self.driver.errors)
            try:
                command = self.driver.tick({self.camera: to_frame(self.latest[0], self.order)})
            except ValueError as exc:  # an encoding vla_client.ros cannot convert
                self.get_logger().error(str(exc), throttle_duration_sec=5.0)
                command = [0.0] * len(self.names)
            for exc in self.driver.errors[errors:]:
                self.get_logger().warning(f"policy request failed: {exc}", throttle_duration_sec=5.0)
            self.publish(command)

        def publish(self, command: Sequence[float]) -> None:
            self.cmd.publish(fill_twist(Twist(), command, self.names))

    try:  # Humble+: leave SIGINT to Python, so the context is still valid for the zero Twist on the way out
        from rclpy.signals import SignalHandlerOptions
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except ImportError:
        rclpy.init(args=args)
    node = None
    try:
        node = PolicyNode()
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        if node is not None:
            node.publish([0.0] * len(node.names))
            time.sleep(0.1)  # let the middleware deliver it before the node goes
            node.driver.wait()
            node.client.close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    main()
