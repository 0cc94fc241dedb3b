"""The package builds the ROS way: `colcon build` in a fresh workspace, then the node started from
the install space (its setup script sourced, the installed executable run) advertises its topics."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ros_helpers import REPO, stop_node, wait_for

rclpy = pytest.importorskip("rclpy")
pytestmark = [pytest.mark.ros, pytest.mark.slow]
COLCON = shutil.which("colcon") or str(Path(sys.executable).parent / "colcon")
# what a robot's checkout holds: not the venv, build outputs, data or runs of this one
NOT_SOURCES = shutil.ignore_patterns(".venv", ".git", "build", "install", "log", "data", "runs", "bench_out",
                                     "demo_out", "__pycache__", "*.egg-info", ".*_cache")


@pytest.mark.skipif(not Path(COLCON).is_file(), reason="colcon is not installed")
def test_colcon_build_installs_a_node_that_starts(tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(REPO, ws / "src" / "amodalgen3d_ros", ignore=NOT_SOURCES)
    # the ROS prefix is the venv of the PyPI wheels (on a robot: /opt/ros/<distro>, sourced)
    env = dict(os.environ, AMENT_PREFIX_PATH=sys.prefix, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    build = subprocess.run([COLCON, "build", "--packages-select", "amodalgen3d_ros", "--cmake-args",
                            f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"],
                           cwd=ws, env=env, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    install = ws / "install" / "amodalgen3d_ros"
    assert (install / "lib" / "amodalgen3d_ros" / "amodalgen3d_node").is_file()
    assert (install / "share" / "amodalgen3d_ros" / "launch" / "amodalgen3d.launch.py").is_file()

    # run from elsewhere than the checkout, whose package python would otherwise find first
    sourced = f"set -e; source {ws}/install/setup.bash; "
    where = subprocess.run(["bash", "-c", sourced + "python -c 'import amodalgen3d_ros.msg, amodalgen3d_ros.ros.node "
                            "as n; print(n.__file__)'"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr[-2000:]
    assert where.stdout.strip().startswith(str(install)), where.stdout  # the installed code, not this checkout

    log = open(tmp_path / "node.log", "w")
    node = subprocess.Popen(["bash", "-c", sourced + f"exec {install}/lib/amodalgen3d_ros/amodalgen3d_node "
                             "--ros-args -p method:=support_hull"], env=env, cwd=tmp_path, stdout=log,
                            stderr=subprocess.STDOUT)
    rclpy.init()
    probe = rclpy.create_node("colcon_probe")
    try:
        def advertised() -> bool:
            topics = dict(probe.get_topic_names_and_types())
            return topics.get("/amodalgen3d_node/objects") == ["amodalgen3d_ros/msg/ReconstructedObjectArray"]

        ok = wait_for(advertised, 60.0, lambda t: rclpy.spin_once(probe, timeout_sec=t))
        assert ok, (tmp_path / "node.log").read_text()[-3000:]
        assert node.poll() is None
    finally:
        stop_node(node)
        probe.destroy_node()
        rclpy.try_shutdown()
