"""Replay of a recorded rosbag2 through the real node: every track's final closed mesh, every
output recorded into a real rosbag2.

Reproducing the same meshes on a second replay is not reliable yet (a view may be left out in one
run and not the other; see the closing notes), so this test checks what replay guarantees today.
"""

from __future__ import annotations

import pytest
import trimesh

pytest.importorskip("rclpy")
pytest.importorskip("amodalgen3d_ros.msg")

pytestmark = pytest.mark.ros


def test_replay_writes_final_meshes_and_records_outputs(tmp_path):
    from rosbags.highlevel import AnyReader

    from amodalgen3d_ros.ros.demo import demo_scene, write_bag
    from amodalgen3d_ros.ros.replay import replay

    scene, views = demo_scene(n_frames=6)
    bag = write_bag(tmp_path / "bag", views, storage="mcap")
    a = replay(bag, tmp_path / "a", rate=2.0, params={"method": "support_hull", "track_timeout_s": "1.0"},
               progress=False)
    assert a["complete"]
    assert len(a["tracks"]) >= 2 and set(map(int, a["tracks"])) <= set(scene.ids)
    for info in a["tracks"].values():
        assert trimesh.load(info["mesh"], process=False).is_watertight
        assert info["frame_id"] == "camera_color_optical_frame"
    with AnyReader([tmp_path / "a" / "outputs_bag"]) as r:
        topics = {c.topic for c in r.connections}
        assert "/amodalgen3d_node/objects" in topics and sum(1 for _ in r.messages()) >= 2
