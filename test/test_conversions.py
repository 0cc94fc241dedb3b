"""Conversions on real message objects."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg")
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from amodalgen3d_ros.ros import conversions as conv  # noqa: E402


def img(enc, arr, step=None, bigendian=False):
    h, w = arr.shape[:2]
    data = np.ascontiguousarray(arr)
    if bigendian:
        data = data.byteswap()
    raw = data.tobytes()
    row = len(raw) // h
    if step and step > row:  # padded rows
        raw = b"".join(raw[i * row:(i + 1) * row] + b"\0" * (step - row) for i in range(h))
    m = Image(height=h, width=w, encoding=enc, is_bigendian=int(bigendian), step=step or row)
    m.data = raw
    return m


def test_colour_encodings():
    rgb = np.random.default_rng(0).integers(0, 255, (4, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(conv.color_from_msg(img("rgb8", rgb)), rgb)
    np.testing.assert_array_equal(conv.color_from_msg(img("bgr8", rgb[:, :, ::-1])), rgb)
    mono = rgb[:, :, 0]
    assert conv.color_from_msg(img("mono8", mono)).shape == (4, 5, 3)


def test_padded_rows_and_big_endian():
    d = np.arange(20, dtype=np.uint16).reshape(4, 5) * 100
    np.testing.assert_allclose(conv.depth_from_msg(img("16UC1", d, step=16)), d * 0.001, atol=1e-6)
    np.testing.assert_allclose(conv.depth_from_msg(img("16UC1", d, bigendian=True)), d * 0.001, atol=1e-6)


def test_depth_units_and_invalid_values():
    d = np.array([[1.5, np.nan], [-1.0, np.inf]], np.float32)
    out = conv.depth_from_msg(img("32FC1", d))
    assert out.tolist() == [[1.5, 0.0], [0.0, 0.0]]


def test_labels_up_to_32_bits():
    lab = np.array([[0, 7], [65535, 2**31 - 1]], np.int32)
    np.testing.assert_array_equal(conv.labels_from_msg(img("32SC1", lab)), lab)
    with pytest.raises(conv.ConversionError, match="negative_label"):
        conv.labels_from_msg(img("32SC1", np.array([[-1]], np.int32)))


@pytest.mark.parametrize("make, cause", [
    (lambda: img("yuv422", np.zeros((2, 2, 2), np.uint8)), "bad_encoding"),
    (lambda: Image(height=0, width=0, encoding="rgb8", step=0), "empty_image"),
    (lambda: Image(height=100000, width=100000, encoding="rgb8", step=300000), "image_too_large"),
])
def test_bad_images(make, cause):
    with pytest.raises(conv.ConversionError) as e:
        conv.color_from_msg(make())
    assert e.value.cause == cause


def test_data_shorter_than_declared():
    m = img("rgb8", np.zeros((4, 5, 3), np.uint8))
    m.data = bytes(m.data)[:10]
    with pytest.raises(conv.ConversionError, match="size_mismatch"):
        conv.color_from_msg(m)


def test_intrinsics():
    ci = CameraInfo()
    ci.k = [500.0, 0, 320, 0, 500.0, 240, 0, 0, 1]
    assert conv.intrinsics_from_msg(ci)[0, 0] == 500.0
    ci.k = [0.0] * 9
    with pytest.raises(conv.ConversionError, match="bad_intrinsics"):
        conv.intrinsics_from_msg(ci)


def test_reconstructed_object_is_a_collision_object_copy(scene0):
    from std_msgs.msg import Header

    from amodalgen3d_ros.reconstruct import reconstruct

    rec = reconstruct(scene0.views[:2], scene0.target_id, "support_hull")
    h = Header(frame_id="world")
    obj = conv.reconstructed_object(rec, h)
    v, f = conv.mesh_from_msg(obj)
    np.testing.assert_allclose(v, rec.mesh.vertices, atol=1e-9)
    np.testing.assert_array_equal(f, rec.mesh.faces)
    assert obj.id == f"track_{scene0.target_id}" and obj.pose.orientation.w == 1.0
    pts = conv.cloud_to_array(obj.points)
    assert set(pts.dtype.names) == {"x", "y", "z", "rgb", "confidence"}
    m = conv.marker(obj)
    assert m.type == m.TRIANGLE_LIST and len(m.points) == 3 * len(f)
    corners = np.array([[q.x, q.y, q.z] for q in m.points]) + [obj.pose.position.x, obj.pose.position.y, obj.pose.position.z]
    np.testing.assert_allclose(corners, v[f.ravel()], atol=1e-9)  # each triangle's corners, in order
    assert obj.hypotheses == []  # none asked for


def test_hypotheses_share_the_object_frame(scene0):
    """Each hypothesis mesh is relative to the object's pose, as its mesh is: read back in the
    header frame it is where the core put it."""
    from std_msgs.msg import Header

    from amodalgen3d_ros.reconstruct import reconstruct

    rec = reconstruct(scene0.views[:2], scene0.target_id, "amodalgen3d?steps=2&samples=2&hypotheses=2")
    assert len(rec.hypotheses) == 2
    obj = conv.reconstructed_object(rec, Header(frame_id="world"))
    assert len(obj.hypotheses) == 2
    for h, m in zip(rec.hypotheses, obj.hypotheses):
        v, f = conv.mesh_from_msg(obj, m)
        np.testing.assert_allclose(v, h.vertices, atol=1e-9)
        np.testing.assert_array_equal(f, h.faces)


def test_precheck_rejects_malformed_inputs_before_synchronization():
    ok = img("mono16", np.ones((4, 5), np.uint16))
    conv.precheck("labels", ok, (4, 5))
    bad = img("mono16", np.ones((4, 5), np.uint16))
    bad.data = bytes(bad.data)[:10]
    cases = [("labels", img("yuv422", np.ones((4, 5), np.uint8)), None, "bad_encoding"),
             ("labels", bad, None, "size_mismatch"),
             ("labels", ok, (8, 10), "size_mismatch"),  # not the camera's image size
             ("labels", img("32SC1", -np.ones((4, 5), np.int32)), None, "negative_label"),
             ("depth", img("rgb8", np.ones((4, 5, 3), np.uint8)), None, "bad_encoding")]
    for name, msg, size, cause in cases:
        with pytest.raises(conv.ConversionError) as e:
            conv.precheck(name, msg, size)
        assert e.value.cause == cause, (name, cause)
    info = CameraInfo(height=4, width=5)
    info.k = [3.0, 0, 2.0, 0, 3.0, 1.5, 0, 0, 1]
    assert conv.precheck("camera_info", info) == (4, 5)  # what images are then held to
    info.k = [3.0, 0, 20.0, 0, 3.0, 1.5, 0, 0, 1]  # principal point outside its own image
    with pytest.raises(conv.ConversionError, match="principal point"):
        conv.precheck("camera_info", info)
    info.height = info.width = 0  # size unset (some drivers): K alone is checked
    assert conv.precheck("camera_info", info) is None
