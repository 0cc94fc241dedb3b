"""Message <-> array conversions, in one tested module (the node only calls these).

Input checks raise ConversionError with a short cause (used as the counter and log key).
Pixel layout and depth units live here, not in callbacks: colour rgb8/bgr8/mono8 -> (H, W, 3)
uint8 RGB; depth 16UC1 (mm) / 32FC1 (m) -> (H, W) float32 m, 0 = none; labels mono8/mono16/32SC1
-> (H, W) int32.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

MAX_PIXELS = 4096 * 4096  # larger images are refused, not allocated


class ConversionError(ValueError):
    def __init__(self, cause: str, detail: str = ""):
        super().__init__(f"{cause}: {detail}" if detail else cause)
        self.cause = cause


_ENCODINGS = {  # encoding -> (numpy dtype, channels)
    "rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "mono8": (np.uint8, 1), "8UC1": (np.uint8, 1),
    "rgba8": (np.uint8, 4), "bgra8": (np.uint8, 4), "mono16": (np.uint16, 1), "16UC1": (np.uint16, 1),
    "32FC1": (np.float32, 1), "32SC1": (np.int32, 1),
}


COLOR_ENCODINGS = ("rgb8", "bgr8", "mono8", "rgba8", "bgra8")
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")
LABEL_ENCODINGS = ("mono8", "8UC1", "mono16", "16UC1", "32SC1")


def check_image(msg, allowed: tuple[str, ...]) -> tuple[int, int, int]:
    """The header checks of an Image, without reading its pixels: (height, width, row bytes);
    ConversionError on an encoding not allowed, an empty or huge image, or data that does not
    hold height x step."""
    enc = msg.encoding
    if enc not in allowed or enc not in _ENCODINGS:
        raise ConversionError("bad_encoding", f"'{enc}' (expected one of {', '.join(allowed)})")
    h, w = int(msg.height), int(msg.width)
    if h <= 0 or w <= 0:
        raise ConversionError("empty_image", f"{w}x{h}")
    if h * w > MAX_PIXELS:
        raise ConversionError("image_too_large", f"{w}x{h}")
    dtype, ch = _ENCODINGS[enc]
    row = w * ch * np.dtype(dtype).itemsize
    step = int(msg.step)
    if step < row or len(msg.data) < step * (h - 1) + row:
        raise ConversionError("size_mismatch", f"{len(msg.data)} bytes for {w}x{h} {enc} with step {step}")
    return h, w, row


def precheck(name: str, msg, size_hw: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """Reject a malformed input message before it is synchronized, so that it can never take the
    place of a valid message with the same stamp: the header checks of each image (check_image),
    the size against the camera's (size_hw, from its camera_info, when known), negative labels,
    and the intrinsics of a camera_info. A camera_info's own (height, width) is returned, where it
    states one (drivers may leave it 0): what the images are then held to. ConversionError names
    the cause."""
    if name == "camera_info":
        K = intrinsics_from_msg(msg)
        h, w = int(msg.height), int(msg.width)
        if h <= 0 or w <= 0:
            return None
        if not (0 <= K[0, 2] <= w and 0 <= K[1, 2] <= h):
            raise ConversionError("bad_intrinsics", f"principal point outside its {w}x{h} image")
        return h, w
    allowed = {"color": COLOR_ENCODINGS, "depth": DEPTH_ENCODINGS, "labels": LABEL_ENCODINGS}[name]
    h, w, _ = check_image(msg, allowed)
    if size_hw and size_hw != (h, w):
        raise ConversionError("size_mismatch", f"{name} is {w}x{h}, the camera's images {size_hw[1]}x{size_hw[0]}")
    # the only label encoding that holds negatives; a view of the data, not labels_from_msg's copy
    if name == "labels" and msg.encoding == "32SC1" and image_to_array(msg, LABEL_ENCODINGS).min() < 0:
        raise ConversionError("negative_label")
    return None


def image_to_array(msg, allowed: tuple[str, ...]) -> np.ndarray:
    """sensor_msgs/Image -> (H, W) or (H, W, C) array, honouring step and endianness."""
    h, w, row = check_image(msg, allowed)
    dtype, ch = _ENCODINGS[msg.encoding]
    step = int(msg.step)
    buf = msg.data if isinstance(msg.data, (bytes, bytearray, memoryview)) else bytes(msg.data)
    raw = np.frombuffer(buf, np.uint8, count=step * (h - 1) + row)
    if step * h > len(raw):  # the last row need not be padded
        raw = np.concatenate([raw, np.zeros(step * h - len(raw), np.uint8)])
    rows = raw.reshape(h, step)[:, :row]
    dt = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    arr = np.ascontiguousarray(rows).view(dt).reshape(h, w, ch) if ch > 1 else np.ascontiguousarray(rows).view(dt).reshape(h, w)
    return arr.astype(dtype, copy=False)


def color_from_msg(msg) -> np.ndarray:
    a = image_to_array(msg, COLOR_ENCODINGS)
    if msg.encoding == "mono8":
        return np.repeat(a[:, :, None], 3, axis=2)
    if msg.encoding in ("bgr8", "bgra8"):
        return np.ascontiguousarray(a[:, :, 2::-1])
    return np.ascontiguousarray(a[:, :, :3])


def depth_from_msg(msg) -> np.ndarray:
    a = image_to_array(msg, DEPTH_ENCODINGS)
    if a.dtype == np.uint16:
        d = a.astype(np.float32) * 0.001
    else:
        d = a.astype(np.float32)
    return np.where(np.isfinite(d) & (d > 0), d, 0.0).astype(np.float32)


def labels_from_msg(msg) -> np.ndarray:
    a = image_to_array(msg, LABEL_ENCODINGS)
    lab = a.astype(np.int32)  # uint8, uint16 and int32 all fit
    if (lab < 0).any():
        raise ConversionError("negative_label")
    return lab


def intrinsics_from_msg(msg) -> np.ndarray:
    K = np.asarray(msg.k, np.float64).reshape(3, 3)
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ConversionError("bad_intrinsics", "fx and fy must be > 0")
    return K


def stamp_to_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int, stamp_cls):
    return stamp_cls(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------

def pack_rgb(colors: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 -> (N,) float32 holding 0x00RRGGBB, the PCL/RViz convention."""
    c = colors.astype(np.uint32)
    return ((c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]).view(np.float32)


def point_cloud(header, points: np.ndarray, colors: np.ndarray, confidence: np.ndarray,
                track_ids: np.ndarray | None = None):
    """sensor_msgs/PointCloud2 with x, y, z, rgb, confidence (float32) [, track_id (uint32)]."""
    from sensor_msgs.msg import PointCloud2, PointField

    names = ["x", "y", "z", "rgb", "confidence"]
    fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, n in enumerate(names)]
    cols = [points[:, 0], points[:, 1], points[:, 2], pack_rgb(colors), confidence]
    dtype = [(n, "<f4") for n in names]
    if track_ids is not None:
        fields.append(PointField(name="track_id", offset=20, datatype=PointField.UINT32, count=1))
        dtype.append(("track_id", "<u4"))
        cols.append(track_ids)
    rec = np.zeros(len(points), dtype=dtype)
    for (n, _), c in zip(dtype, cols):
        rec[n] = c
    msg = PointCloud2(header=header, height=1, width=len(points), fields=fields, is_bigendian=False,
                      point_step=rec.dtype.itemsize, row_step=rec.dtype.itemsize * len(points), is_dense=True)
    msg.data = rec.tobytes()
    return msg


def cloud_to_array(msg) -> np.ndarray:
    """PointCloud2 written by point_cloud() -> structured array (for tests and replay)."""
    dt = [(f.name, "<f4" if f.datatype == 7 else "<u4") for f in msg.fields]
    return np.frombuffer(bytes(msg.data), dtype=np.dtype(dt))


def reconstructed_object(rec, header, max_points: int = 4096):
    """core Reconstruction -> amodalgen3d_ros/ReconstructedObject (mesh relative to its pose)."""
    from geometry_msgs.msg import Point, Pose
    from shape_msgs.msg import Mesh, MeshTriangle

    from amodalgen3d_ros.msg import ReconstructedObject

    def to_mesh(vertices: np.ndarray, faces) -> Mesh:
        # from plain lists and uint32 rows: a message per vertex and face is the cost here
        m = Mesh()
        m.vertices = [Point(x=a, y=b, z=c) for a, b, c in np.asarray(vertices, np.float64).tolist()]
        m.triangles = [MeshTriangle(vertex_indices=t) for t in np.asarray(faces, np.uint32).reshape(-1, 3)]
        return m

    v = np.asarray(rec.mesh.vertices, np.float64)
    center = v.mean(0)
    local = v - center
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(x) for x in center)
    pose.orientation.w = 1.0
    idx = np.arange(len(v))
    if len(idx) > max_points:
        idx = np.random.default_rng(0).choice(len(v), max_points, replace=False)
    msg = ReconstructedObject()
    msg.header = header
    msg.id = f"track_{rec.track_id}"
    msg.track_id = int(rec.track_id)
    msg.pose = pose
    msg.mesh = to_mesh(local, rec.mesh.faces)
    msg.points = point_cloud(header, local[idx], rec.vertex_colors[idx], rec.vertex_confidence[idx])
    msg.vertex_confidence = rec.vertex_confidence.astype(np.float32).tolist()
    msg.n_views_used = int(rec.n_views_used)
    msg.view_pose_sources = [str(r.get("pose", "none")) for r in rec.registration]
    msg.visible_fraction = float(rec.visible_fraction)
    msg.inference_seconds = float(rec.seconds)
    msg.method = rec.method
    msg.hypotheses = [to_mesh(np.asarray(h.vertices, np.float64) - center, h.faces) for h in rec.hypotheses]
    return msg


def mesh_from_msg(obj, mesh=None) -> tuple[np.ndarray, np.ndarray]:
    """ReconstructedObject -> vertices (V, 3) in the header frame, faces (F, 3); ``mesh``: one
    of its hypotheses instead of its mesh."""
    p = obj.pose.position
    mesh = obj.mesh if mesh is None else mesh
    v = np.array([[q.x, q.y, q.z] for q in mesh.vertices]).reshape(-1, 3) + [p.x, p.y, p.z]
    f = np.array([list(t.vertex_indices) for t in mesh.triangles], np.int64)
    return v, f


def track_color(track_id: int) -> tuple[float, float, float]:
    rng = np.random.default_rng(track_id)
    c = rng.uniform(0.3, 1.0, 3)
    return float(c[0]), float(c[1]), float(c[2])


def marker(obj, ns: str = "amodalgen3d"):
    """A TRIANGLE_LIST marker of one object, coloured per track."""
    from visualization_msgs.msg import Marker

    m = Marker()
    m.header = obj.header
    m.ns = ns
    m.id = int(obj.track_id)
    m.type = Marker.TRIANGLE_LIST
    m.action = Marker.ADD
    m.pose = obj.pose
    m.scale.x = m.scale.y = m.scale.z = 1.0
    r, g, b = track_color(obj.track_id)
    m.color.r, m.color.g, m.color.b, m.color.a = r, g, b, 0.8
    verts = obj.mesh.vertices  # the mesh's own Point messages, not copies: a copy per corner took 0.2 s
    m.points = [verts[i] for t in obj.mesh.triangles for i in t.vertex_indices.tolist()]
    return m


def delete_marker(header, track_id: int, ns: str = "amodalgen3d"):
    from visualization_msgs.msg import Marker

    m = Marker()
    m.header = header
    m.ns = ns
    m.id = int(track_id)
    m.action = Marker.DELETE
    return m


# --------------------------------------------------------------------------------------------
# Views -> input messages (the demo bag, replay tests and the two-process test publish these)
# --------------------------------------------------------------------------------------------

def view_to_msgs(view, stamp_ns: int, frame_id: str = "camera_color_optical_frame"):
    """A View -> (colour rgb8, depth 16UC1 mm, CameraInfo, labels mono16) with one stamp."""
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import CameraInfo, Image

    header = _header(ns_to_stamp(stamp_ns, Time), frame_id)
    h, w = view.labels.shape

    def image(enc: str, arr: np.ndarray) -> Image:
        m = Image(header=header, height=h, width=w, encoding=enc, is_bigendian=0,
                  step=int(arr.strides[0]))
        m.data = np.ascontiguousarray(arr).tobytes()
        return m

    color = image("rgb8", np.ascontiguousarray(view.color))
    depth_mm = np.clip(np.round(view.depth_m * 1000), 0, 65535).astype(np.uint16) if view.depth_m is not None else None
    depth = image("16UC1", depth_mm) if depth_mm is not None else None
    labels = image("mono16", view.labels.astype(np.uint16))
    info = CameraInfo(header=header, height=h, width=w, distortion_model="plumb_bob")
    info.k = [float(x) for x in view.K.reshape(-1)]
    info.d = [0.0] * 5
    info.r = [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]
    info.p = [float(view.K[0, 0]), 0.0, float(view.K[0, 2]), 0.0, 0.0, float(view.K[1, 1]), float(view.K[1, 2]), 0.0,
              0.0, 0.0, 1.0, 0.0]
    return color, depth, info, labels


def _header(stamp, frame_id: str):
    from std_msgs.msg import Header

    return Header(stamp=stamp, frame_id=frame_id)


def result_header(frame: str, views, world_frame: str):
    """The header of a result: in the world frame (all views posed) at the newest view's stamp,
    else in the reference (first) view's optical frame at its stamp."""
    from builtin_interfaces.msg import Time

    ref = views[-1] if frame == "world" else views[0]
    sec = int(ref.stamp_s)
    stamp = Time(sec=sec, nanosec=int(round((ref.stamp_s - sec) * 1e9)))
    return _header(stamp, world_frame if frame == "world" else ref.frame_id)


def parameter_descriptor(p):
    """A params.Param -> rcl_interfaces/ParameterDescriptor: description, choices, allowed range."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    d = ParameterDescriptor(description=p.description + (f" ({', '.join(p.choices)})" if p.choices else ""))
    if p.min is not None and isinstance(p.default, int) and not isinstance(p.default, bool):
        d.integer_range = [IntegerRange(from_value=int(p.min), to_value=int(min(p.max, 2**31 - 1)), step=0)]
    elif p.min is not None and isinstance(p.default, float):
        d.floating_point_range = [FloatingPointRange(from_value=float(p.min), to_value=float(p.max), step=0.0)]
    return d


def transform_to_matrix(transform) -> np.ndarray:
    """geometry_msgs/Transform -> (4, 4) float64 homogeneous matrix."""
    q, p = transform.rotation, transform.translation
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
    T[:3, 3] = [p.x, p.y, p.z]
    return T


def merged_cloud(header, objects):
    """One PointCloud2 of every ReconstructedObject's points, in the objects' shared frame (each
    cloud is stored relative to its object's pose position), with a track_id field."""
    pts, cols, conf, ids = [], [], [], []
    for o in objects:
        a = cloud_to_array(o.points)
        p = o.pose.position
        pts.append(np.stack([a["x"] + p.x, a["y"] + p.y, a["z"] + p.z], 1))
        rgb = a["rgb"].view(np.uint32)
        cols.append(np.stack([(rgb >> 16) & 255, (rgb >> 8) & 255, rgb & 255], 1).astype(np.uint8))
        conf.append(a["confidence"])
        ids.append(np.full(len(a), o.track_id, np.uint32))
    return point_cloud(header, np.concatenate(pts), np.concatenate(cols), np.concatenate(conf), np.concatenate(ids))
