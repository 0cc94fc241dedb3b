"""Property tests of the input layers: whatever a message holds, conversion either returns a
well-formed array or raises ConversionError with a known cause; the view buffer stays bounded."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("sensor_msgs.msg")
from sensor_msgs.msg import Image  # noqa: E402

from amodalgen3d_ros.ros import conversions as conv  # noqa: E402
from amodalgen3d_ros.tracks import BufferConfig, ViewBuffer  # noqa: E402
from amodalgen3d_ros.views import View  # noqa: E402

CAUSES = {"bad_encoding", "empty_image", "image_too_large", "size_mismatch", "negative_label"}
ENCODINGS = ["rgb8", "bgr8", "mono8", "16UC1", "32FC1", "32SC1", "mono16", "yuv422", "", "rgb16", "8UC3"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(enc=st.sampled_from(ENCODINGS), h=st.integers(-2, 40), w=st.integers(-2, 40), step=st.integers(-4, 200),
       n=st.integers(0, 5000), big=st.booleans(), fn=st.sampled_from(["color", "depth", "labels"]))
def test_any_image_message_converts_or_is_rejected_with_a_cause(enc, h, w, step, n, big, fn):
    m = Image()
    m.encoding = enc
    m.height, m.width = max(h, 0), max(w, 0)
    m.step = max(step, 0)
    m.is_bigendian = int(big)
    m.data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
    f = {"color": conv.color_from_msg, "depth": conv.depth_from_msg, "labels": conv.labels_from_msg}[fn]
    try:
        a = f(m)
    except conv.ConversionError as e:
        assert e.cause in CAUSES
        return
    assert a.shape[:2] == (m.height, m.width)
    if fn == "depth":
        assert a.dtype == np.float32 and np.isfinite(a).all() and (a >= 0).all()
    if fn == "color":
        assert a.dtype == np.uint8 and a.shape[2] == 3


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**31 - 1), st.floats(-1e3, 1e3, allow_nan=False),
                          st.integers(0, 15), st.integers(0, 15)), min_size=1, max_size=40))
def test_view_buffer_stays_bounded_under_any_stream(events):
    cfg = BufferConfig(max_views=3, max_tracks=4, min_visible_px=4, track_timeout_s=2.0)
    b = ViewBuffer(cfg)
    K = np.array([[20.0, 0, 8], [0, 20.0, 8], [0, 0, 1]])
    for tid, stamp, y, x in events:
        labels = np.zeros((16, 16), np.int64)
        labels[y:y + 4, x:x + 4] = tid
        depth = np.where(np.random.default_rng(tid % 7).random((16, 16)) < 0.8, 1.0, 0.0).astype(np.float32)
        b.add_frame(View(np.zeros((16, 16, 3), np.uint8), depth, K, labels, stamp_s=stamp), 0.0)
        b.expire(stamp)
        assert len(b.tracks) <= cfg.max_tracks
        assert all(len(t.views) <= cfg.max_views for t in b.tracks.values())
