"""Per-track view buffers: bounded, choosing views for what they add."""

from __future__ import annotations

import numpy as np

from amodalgen3d_ros.tracks import BufferConfig, ViewBuffer
from amodalgen3d_ros.views import View


def frame(stamp, boxes, h=60, w=80):
    labels = np.zeros((h, w), np.int64)
    for tid, (y0, y1, x0, x1) in boxes.items():
        labels[y0:y1, x0:x1] = tid
    K = np.array([[50.0, 0, w / 2], [0, 50.0, h / 2], [0, 0, 1]])
    return View(np.zeros((h, w, 3), np.uint8), np.ones((h, w), np.float32), K, labels, stamp_s=stamp)


def test_identical_frames_are_not_kept_twice():
    b = ViewBuffer(BufferConfig(min_visible_px=10))
    assert b.add_frame(frame(0.0, {5: (10, 30, 10, 30)}), 0.0) == [5]
    assert b.add_frame(frame(0.1, {5: (10, 30, 10, 30)}), 0.1) == []
    assert b.counters["views_redundant"] == 1
    assert b.add_frame(frame(0.2, {5: (10, 30, 40, 70)}), 0.2) == [5]  # it moved in the image: new view


def test_barely_visible_views_are_dropped():
    b = ViewBuffer(BufferConfig(min_visible_px=100))
    assert b.add_frame(frame(0.0, {5: (0, 5, 0, 5)}), 0.0) == []
    assert b.counters["views_barely_visible"] == 1 and not b.tracks


def test_full_buffer_replaces_the_least_useful_but_keeps_the_reference():
    b = ViewBuffer(BufferConfig(max_views=3, min_visible_px=10, min_novelty=0.1))
    b.add_frame(frame(0.0, {5: (10, 20, 0, 10)}), 0)
    ref = b.tracks[5].views[0].view
    for k in range(1, 12):
        b.add_frame(frame(k * 0.1, {5: (10, 20 + k * 3, 5 * k, 5 * k + 10 + k)}), k)
    t = b.tracks[5]
    assert len(t.views) == 3 and t.views[0].view is ref
    assert b.counters["views_replaced"] >= 1


def test_tracks_are_bounded_and_expire():
    b = ViewBuffer(BufferConfig(max_tracks=2, min_visible_px=10, track_timeout_s=1.0))
    b.add_frame(frame(0.0, {1: (0, 10, 0, 10)}), 0)
    b.add_frame(frame(0.5, {2: (0, 10, 20, 30)}), 0)
    b.add_frame(frame(0.6, {3: (0, 10, 40, 50)}), 0)
    assert set(b.tracks) == {2, 3} and b.counters["tracks_dropped_capacity"] == 1
    # the owner learns of the dropped track once (its published result must be withdrawn)
    assert [t.track_id for t in b.take_dropped()] == [1] and b.take_dropped() == []
    assert b.counters["tracks_created"] == 3
    gone = b.expire(1.55)
    assert [t.track_id for t in gone] == [2]
    assert b.expire(0.0) == [] and set(b.tracks) == {3}  # time jumped back: re-timed, not expired


def test_target_filter():
    b = ViewBuffer(BufferConfig(min_visible_px=10))
    assert b.add_frame(frame(0.0, {1: (0, 10, 0, 10), 2: (20, 30, 20, 30)}), 0, target_ids=[2]) == [2]


def test_memory_bound_counts_shared_frames_once():
    b = ViewBuffer(BufferConfig(min_visible_px=10))
    b.add_frame(frame(0.0, {1: (0, 10, 0, 10), 2: (20, 30, 20, 30)}), 0)
    s = b.stats()
    assert s["views"] == 2 and s["distinct_frames"] == 1


def test_view_without_valid_depth_on_target_does_not_block_later_views():
    """Bug: an all-NaN depth frame became the reference and made the next good frame 'redundant'."""
    b = ViewBuffer(BufferConfig(min_visible_px=10))
    holes = frame(0.0, {5: (10, 30, 10, 30)})
    holes.depth_m[:] = 0
    assert b.add_frame(holes, 0.0) == []
    assert b.counters["views_barely_visible"] == 1
    assert b.add_frame(frame(0.1, {5: (10, 30, 10, 30)}), 0.1) == [5]


def posed(stamp, boxes, T, pose_frame):
    v = frame(stamp, boxes)
    v.T_world_cam, v.pose_source, v.pose_frame = T, "odometry", pose_frame
    return v


def test_a_moved_target_starts_a_fresh_view_set():
    b = ViewBuffer(BufferConfig(min_visible_px=10))
    b.add_frame(frame(0.0, {5: (10, 30, 10, 30), 6: (40, 55, 10, 30)}), 0.0)
    b.add_frame(frame(0.1, {5: (10, 30, 40, 70), 6: (40, 55, 40, 70)}), 0.1)
    version = b.tracks[5].version
    b.restart(5)
    assert b.tracks[5].views == [] and b.tracks[5].version == version + 1 and len(b.tracks[6].views) == 2
    assert b.counters["tracks_restarted_moved"] == 1
    assert b.add_frame(frame(0.2, {5: (10, 30, 40, 70)}), 0.2) == [5]  # the same box as before: now the first view
    assert b.tracks[5].views[0].view.stamp_s == 0.2


def test_directions_are_compared_only_within_one_pose_frame():
    """Two segments of a stream's tracking are unrelated: a pose far from a kept one's says nothing
    when they are in different segments; there the image boxes decide."""
    b = ViewBuffer(BufferConfig(min_visible_px=10))
    box = {5: (10, 30, 10, 30)}
    turned = np.eye(4)
    turned[:3, :3] = [[0, 0, 1], [0, 1, 0], [-1, 0, 0]]  # 90 degrees about y
    b.add_frame(posed(0.0, box, np.eye(4), "odometry/1"), 0.0)
    assert b.add_frame(posed(0.1, box, np.eye(4), "odometry/1"), 0.1) == []  # same pose: redundant
    assert b.add_frame(posed(0.2, box, turned, "odometry/2"), 0.2) == []  # another segment, the same box: redundant
    assert b.add_frame(posed(0.3, box, turned, "odometry/1"), 0.3) == [5]  # the same segment, turned: new
