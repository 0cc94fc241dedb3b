"""The stamp synchronizer: exact and approximate matching, bounded queues, counted drops."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amodalgen3d_ros.ros.sync import StampSynchronizer


def test_exact_matches_equal_stamps_in_any_arrival_order():
    s = StampSynchronizer(3)
    assert s.add(1, 100, "i1") == []
    assert s.add(2, 100, "l1") == []
    assert s.add(0, 100, "c1") == [(100, ["c1", "i1", "l1"])]
    assert s.counters.matched == 1 and s.pending() == 0


def test_exact_drops_frames_whose_partner_never_comes():
    s = StampSynchronizer(2)
    s.add(0, 100, "a")  # its partner never arrives
    s.add(0, 200, "b")
    out = s.add(1, 200, "B")
    assert out == [(200, ["b", "B"])]
    assert s.counters.dropped_unmatched == 1


def test_approximate_within_slop():
    s = StampSynchronizer(2, slop_ns=10)
    assert s.add(0, 100, "a") == []
    assert s.add(1, 108, "A") == [(100, ["a", "A"])]
    assert s.add(0, 200, "b") == []
    assert s.add(1, 215, "B") == []  # outside the slop: never matches
    assert s.add(0, 300, "c") == []
    assert s.counters.matched == 1 and s.counters.dropped_unmatched >= 1


def test_queue_is_bounded_and_overflow_counted():
    s = StampSynchronizer(2, queue_size=5)
    for k in range(20):
        s.add(0, k, k)
    assert s.pending() == 5 and s.counters.dropped_overflow == 15


def test_duplicates_and_jumps_back_are_counted():
    s = StampSynchronizer(2)
    s.add(0, 5_000_000_000, "a")
    s.add(0, 5_000_000_000, "a again")
    assert s.counters.dropped_duplicate == 1
    s.add(1, 5_000_000_000, "A")
    assert s.counters.matched == 1
    s.add(0, 1_000_000_000, "loop")  # the bag started over
    assert s.counters.time_jumps_back == 1
    assert s.add(1, 1_000_000_000, "LOOP") == [(1_000_000_000, ["loop", "LOOP"])]


def test_a_frame_repeated_after_it_was_matched_is_a_duplicate_not_a_new_frame():
    """Bug: a repeat was counted only while its first was still queued; once the first had been
    matched (at once, now that callbacks only synchronize) the repeat matched again as a new frame
    (fuzz: 228 duplicate-stamped frames, 0 counted)."""
    s = StampSynchronizer(2)
    assert s.add(0, 5_000_000_000, "a") == [] and len(s.add(1, 5_000_000_000, "A")) == 1
    assert s.add(0, 5_000_000_000, "a again") == [] and s.add(1, 5_000_000_000, "A again") == []
    assert s.counters.dropped_duplicate == 2 and s.counters.matched == 1 and s.pending() == 0
    assert len(s.add(0, 5_033_000_000, "b")) == 0 and len(s.add(1, 5_033_000_000, "B")) == 1  # the next frame


def test_bad_construction_is_refused():
    with pytest.raises(ValueError):
        StampSynchronizer(0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 50)), max_size=200), st.integers(0, 5))
def test_property_every_message_is_matched_dropped_or_pending(events, slop):
    s = StampSynchronizer(3, queue_size=8, slop_ns=slop)
    out = []
    for i, stamp in events:
        out += s.add(i, stamp * 1000, (i, stamp))
    c = s.counters
    n_in = len(events)
    accounted = 3 * len(out) + c.dropped_unmatched + c.dropped_overflow + c.dropped_duplicate + s.pending()
    assert accounted == n_in
    assert s.pending() <= 3 * 8
    for stamp, items in out:  # matched sets really are within the slop
        assert all(abs(it[1] * 1000 - stamp) <= slop for it in items)


def test_camera_info_exact_else_newest_before_else_newest():
    from amodalgen3d_ros.ros.sync import LatestBefore

    c = LatestBefore(size=3)
    assert c.get(100) is None and c.missing == 1  # nothing yet: the frame cannot be used
    c.add(100, "i100")
    c.add(300, "i300")
    assert c.get(300) == "i300" and c.exact == 1
    assert c.get(250) == "i100"  # its own was lost or is late: the newest before it
    assert c.get(50) == "i300"  # older than all (a bag looped): the newest received
    assert c.not_exact == 2
    c.add(300, "i300b")  # the same stamp again: the newer message wins, kept once
    assert c.get(300) == "i300b" and len(c.items) == 2
    for s in (10, 20, 30):  # bounded: the oldest arrivals go first, whatever their stamps
        c.add(s, f"i{s}")
    assert [s for s, _ in c.items] == [10, 20, 30]
