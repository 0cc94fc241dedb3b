"""The node is a managed (lifecycle) node; bad parameters stop it with one clear line."""

from __future__ import annotations

import subprocess
import sys

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("amodalgen3d_ros.msg")

from ros_helpers import REPO, start_node, stop_node, wait_for  # noqa: E402

pytestmark = pytest.mark.ros


def test_bad_parameter_exits_with_one_clear_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "amodalgen3d_ros.ros.node", "--ros-args", "--params-file",
                        str(REPO / "config" / "amodalgen3d.yaml"), "-p", "max_views:=0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    out = r.stdout + r.stderr
    assert "bad parameters" in out and "max_views" in out and "out of range" in out
    assert "Traceback" not in r.stdout + r.stderr


def test_missing_weights_fail_configure(tmp_path):
    r = subprocess.run([sys.executable, "-m", "amodalgen3d_ros.ros.node", "--ros-args", "-p", "method:=amodalgen3d",
                        "-p", f"weights_path:={tmp_path / 'none.safetensors'}"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "weights not found" in r.stdout + r.stderr


def test_lifecycle_transitions(tmp_path):
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState

    proc = start_node({"autostart": "false", "method": "support_hull", "color_topic": "/lc/color"}, tmp_path)
    rclpy.init()
    n = rclpy.create_node("lifecycle_probe")
    try:
        get = n.create_client(GetState, "/amodalgen3d_node/get_state")
        change = n.create_client(ChangeState, "/amodalgen3d_node/change_state")
        assert get.wait_for_service(30) and change.wait_for_service(30)

        def call(cli, req):
            f = cli.call_async(req)
            rclpy.spin_until_future_complete(n, f, timeout_sec=30)
            return f.result()

        def subscribed():
            return any(t == "/lc/color" for t, _ in n.get_topic_names_and_types())

        assert call(get, GetState.Request()).current_state.label == "unconfigured"
        assert not wait_for(subscribed, 1.0, lambda t: rclpy.spin_once(n, timeout_sec=t))
        for tid, label in ((Transition.TRANSITION_CONFIGURE, "inactive"), (Transition.TRANSITION_ACTIVATE, "active")):
            assert call(change, ChangeState.Request(transition=Transition(id=tid))).success
            assert call(get, GetState.Request()).current_state.label == label
        assert wait_for(subscribed, 10, lambda t: rclpy.spin_once(n, timeout_sec=t))
        assert call(change, ChangeState.Request(transition=Transition(id=Transition.TRANSITION_DEACTIVATE))).success
        assert call(get, GetState.Request()).current_state.label == "inactive"
    finally:
        n.destroy_node()
        rclpy.try_shutdown()
        assert stop_node(proc) == 0, (tmp_path / "node.log").read_text()[-1500:]
