"""The node's ROS-free scheduling: which frame is taken, which track runs next, what became of each."""

from __future__ import annotations

from test_tracks import frame

from amodalgen3d_ros.scheduling import FrameQueue, FrameRateLimiter, ReconstructionSchedule, RejectCounter, sensor_now
from amodalgen3d_ros.tracks import BufferConfig, Track, ViewBuffer


def test_rate_limit_is_in_sensor_time_and_a_stamp_going_back_starts_over():
    r = FrameRateLimiter(5.0)
    assert not r.limited(0)
    r.take(0)
    assert r.limited(100_000_000) and not r.limited(200_000_000)
    assert not r.limited(-1)  # a looping bag: earlier stamps are taken again
    assert not FrameRateLimiter(0.0).limited(1)  # 0: every frame


def test_rate_limit_slot_is_taken_only_by_a_usable_frame():
    r = FrameRateLimiter(5.0)
    assert not r.limited(0)  # a bad frame at 0 is not taken: the next one still gets in
    assert not r.limited(50_000_000)


def test_frame_queue_drops_the_oldest_whole_frames_and_counts_them():
    q = FrameQueue(2)
    q.push([(1, {"a": 1}), (2, {"a": 2}), (3, {"a": 3})])
    assert q.dropped == 1 and len(q) == 2
    assert q.pop() == (2, {"a": 2}) and q.pop() == (3, {"a": 3}) and q.pop() is None


def test_rejects_are_counted_always_and_logged_once_per_cause_and_period():
    r = RejectCounter(log_period_s=5.0)
    assert r.count("bad_encoding", 0.0) and not r.count("bad_encoding", 1.0)
    assert r.count("empty_image", 1.0)  # another cause is not hidden by the first
    assert r.count("bad_encoding", 5.0)
    assert dict(r.counts) == {"bad_encoding": 3, "empty_image": 1}


def test_sensor_time_follows_the_frames_until_input_stops():
    assert sensor_now(100.0, input_idle_s=1.0, track_timeout_s=5.0) == 100.0
    assert sensor_now(100.0, input_idle_s=7.0, track_timeout_s=5.0) == 107.0


def test_new_tracks_come_first_then_the_longest_waiting_change():
    b = ViewBuffer(BufferConfig(min_visible_px=10))
    s = ReconstructionSchedule(min_interval_s=0.0, max_pending_final=10)
    s.views_arrived(b.add_frame(frame(0.0, {1: (0, 20, 0, 20), 2: (30, 50, 0, 20)}), 0.0), 0.0)
    s.run_started(1, 1.0)
    s.run_succeeded(1)
    b.tracks[1].reconstructed_version = -1  # track 1 changed again and has a result; 2 has none
    s.views_arrived([2], 0.5)
    assert s.due(b, 2.0) == [2, 1]
    assert s.stats["tracks_with_result"] == 1 and s.stats["reconstructions"] == 1


def test_min_interval_holds_a_track_back_unless_it_is_forced():
    b = ViewBuffer(BufferConfig(min_visible_px=10))
    s = ReconstructionSchedule(min_interval_s=2.0, max_pending_final=10)
    b.add_frame(frame(0.0, {1: (0, 20, 0, 20)}), 0.0)
    s.run_started(1, 10.0)
    assert s.due(b, 11.0) == [] and s.changed(b) == [1]
    s.force([1])
    assert s.due(b, 11.0) == [1]
    s.run_started(1, 11.0)  # a run clears the request
    assert 1 not in s.forced


def test_two_worker_threads_never_take_the_same_track():
    """Several reconstructions run at once: each due track goes to one worker thread, and an ended
    track's final run waits until its live run is over (else the older result could land last)."""
    b = ViewBuffer(BufferConfig(min_visible_px=10))
    s = ReconstructionSchedule(min_interval_s=0.0, max_pending_final=10)
    s.views_arrived(b.add_frame(frame(0.0, {1: (0, 20, 0, 20), 2: (30, 50, 0, 20)}), 0.0), 0.0)
    first, second = s.take(b, 1.0), s.take(b, 1.0)
    assert {first, second} == {1, 2} and s.take(b, 1.0) is None
    s.expired([b.tracks[first]])
    assert s.next_expired() is None  # its live run is still going
    s.run_ended(first)
    t = s.next_expired()
    assert t is not None and t.track_id == first and first in s.running
    s.final_run_done(first)
    assert s.running == {second}


def test_every_ended_track_has_a_result_or_a_counted_reason():
    s = ReconstructionSchedule(min_interval_s=0.0, max_pending_final=10)
    ok, failed, never = Track(1), Track(2), Track(3)
    s.run_started(1, 0.0)
    s.run_succeeded(1)
    s.run_failed(2, "TimeoutError: took too long")
    assert s.expired([ok, failed, never]) == [ok, failed, never] and s.expiring == 3
    why = {}
    while (t := s.next_expired()) is not None:
        why[t.track_id] = s.final_run_done(t.track_id)
    assert why[1] is None and "failed (TimeoutError" in why[2] and "no view of it was kept" in why[3]
    assert s.expiring == 0 and not s.failed and not s.with_result
    assert s.stats["tracks_ended_without_result_failed"] == 1
    assert s.stats["tracks_ended_without_result_not_reconstructed"] == 1
    assert not s.last_run_wall and not s.newest_view_wall  # per-track state goes with the track


def test_final_runs_are_bounded_and_dropped_tracks_get_none():
    s = ReconstructionSchedule(min_interval_s=0.0, max_pending_final=2)
    tracks = [Track(i, views=[object()], version=1) for i in range(4)]  # type: ignore[list-item]
    dropped = Track(9, views=[object()], version=3)  # type: ignore[list-item]
    out = s.expired(tracks, dropped=[dropped])
    assert out[0] is dropped and dropped.views == [] and dropped.reconstructed_version == 3
    assert [bool(t.views) for t in tracks] == [False, False, True, True]
    assert s.stats["final_runs_skipped_backlog"] == 2
    why = {t.track_id: s.final_run_done(t.track_id) for t in out}
    assert "capacity" in why[9] and "skipped" in why[0] and "skipped" in why[1]


def test_latency_is_from_the_newest_view_to_the_result():
    s = ReconstructionSchedule(min_interval_s=0.0, max_pending_final=10)
    s.views_arrived([4], 1.0)
    t_in = s.run_started(4, 1.5)
    s.latency(t_in, 1.5, 2.5)
    d = s.diagnostics(ViewBuffer())
    assert d["latency_s_median"] == "1.500" and d["latency_samples"] == 1
    assert s.stats["last_wait_s"] == 0.5 and s.stats["last_run_s"] == 1.0


def test_a_frame_waits_a_while_for_its_camera_info_then_is_dropped():
    q = FrameQueue(4)
    q.push([(1, {"a": 1}), (2, {"a": 2})])
    first = q.pop()
    assert q.hold(first, now_wall=10.0)  # put back in front: order kept
    assert q.pop() is first and q.hold(first, now_wall=11.9)
    assert q.pop() is first and not q.hold(first, now_wall=12.0)  # waited 2 s: the caller drops it
    assert q.pop() == (2, {"a": 2})
