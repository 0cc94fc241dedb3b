"""The launch file starts the node (where launch and launch_ros are installed: a ROS 2 install)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

launch = pytest.importorskip("launch")
pytest.importorskip("launch_ros")
rclpy = pytest.importorskip("rclpy")

pytestmark = pytest.mark.ros
LAUNCH_FILE = Path(__file__).resolve().parents[1] / "launch" / "amodalgen3d.launch.py"


def test_launch_file_starts_the_node_with_arguments():
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    ld = launch.LaunchDescription([IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
        launch_arguments={"namespace": "launchtest", "use_sim_time": "true", "color_topic": "/lt/color"}.items())])
    ls = launch.LaunchService()
    ls.include_launch_description(ld)
    found = {}

    def probe():
        rclpy.init()
        n = rclpy.create_node("launch_probe")
        end = time.time() + 60
        while time.time() < end and not found:
            rclpy.spin_once(n, timeout_sec=0.2)
            topics = [t for t, _ in n.get_topic_names_and_types()]
            if "/launchtest/amodalgen3d_node/objects" in topics and "/lt/color" in topics:
                found["ok"] = True
        n.destroy_node()
        rclpy.try_shutdown()
        ls.shutdown()

    threading.Thread(target=probe, daemon=True).start()
    ls.run()
    assert found, "the launched node's topics never appeared"
