"""Camera poses from TF, the first source of poses (docs/ros.md): where ``world_frame`` is set
and tf2_ros is installed (it is not in the PyPI wheels this package is tested with)."""

from __future__ import annotations

import numpy as np
import rclpy

from .conversions import transform_to_matrix


class TfPoses:
    """The camera's pose in the world frame at an image's stamp, from a tf2 buffer the node fills."""

    def __init__(self, node, world_frame: str, tf2_ros):
        self.world_frame = world_frame
        self.buffer = tf2_ros.Buffer()
        self.listener = tf2_ros.TransformListener(self.buffer, node)

    @classmethod
    def make(cls, node, world_frame: str) -> TfPoses | None:
        """None without a world frame, or (said once in the log) without tf2_ros."""
        if not world_frame:
            return None
        try:
            import tf2_ros
        except ImportError:
            node.get_logger().warning("world_frame is set but tf2_ros is not installed: estimating poses between views")
            return None
        return cls(node, world_frame, tf2_ros)

    def lookup(self, frame_id: str, stamp) -> tuple[np.ndarray | None, str]:
        """(T_world_cam (4, 4), "") or (None, why)."""
        try:
            t = self.buffer.lookup_transform(self.world_frame, frame_id, rclpy.time.Time.from_msg(stamp),
                                             rclpy.duration.Duration(seconds=0.05))
        except Exception as e:  # tf2 raises several exception types: all mean "no pose"
            return None, str(e)
        return transform_to_matrix(t.transform), ""
