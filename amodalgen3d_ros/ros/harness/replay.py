"""Replay a rosbag2 (sqlite3 or mcap, read with `rosbags`) into the node over DDS with /clock,
record every output message into an output bag, and write each track's final mesh.

    amodalgen3d replay BAG -o OUT [--rate 1.0] [--no-start-node] [-p name:=value ...]
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
OUTPUT_TOPICS = {"objects": "amodalgen3d_ros/msg/ReconstructedObjectArray", "markers": "visualization_msgs/msg/MarkerArray",
                 "points": "sensor_msgs/msg/PointCloud2"}


def msg_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> the rclpy message class."""
    pkg, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def _msg_dir() -> Path:
    try:
        from ament_index_python.packages import get_package_share_directory

        d = Path(get_package_share_directory("amodalgen3d_ros")) / "msg"
        if d.is_dir():
            return d
    except Exception:  # not in the ament index: the source tree
        pass
    return REPO / "msg"


def typestore():
    """rosbags' Kilted types plus ours, for writing the output bag."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for f in sorted(_msg_dir().glob("*.msg")):
        types.update(get_types_from_msg(f.read_text(), f"amodalgen3d_ros/msg/{f.stem}"))
    ts.register(types)
    return ts


def start_node(out: Path, params: dict[str, str]) -> subprocess.Popen:
    args = [sys.executable, "-m", "amodalgen3d_ros.ros.node", "--ros-args", "--params-file",
            str(REPO / "config" / "amodalgen3d.yaml"), "-p", "use_sim_time:=true"]
    for k, v in params.items():
        args += ["-p", f"{k}:={v}"]
    return subprocess.Popen(args, stdout=(out / "node.log").open("w"), stderr=subprocess.STDOUT, env=dict(os.environ))


def replay(bag: str | Path, out: str | Path, rate: float = 1.0, start: bool = True, params: dict | None = None,
           node_name: str = "/amodalgen3d_node", timeout_s: float = 300.0, progress: bool = True) -> dict:
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.serialization import deserialize_message, serialize_message
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import Writer
    from rosgraph_msgs.msg import Clock
    from tqdm import tqdm

    from ..conversions import mesh_from_msg
    from .peer import init_rclpy, stop_process, wait_until_connected

    bag, out = Path(bag), Path(out)
    if not bag.exists():
        raise FileNotFoundError(f"{bag}: no such bag")
    out.mkdir(parents=True, exist_ok=True)
    params = dict(params or {})
    # a replayed bag gives the same meshes however fast the machine: registration without a budget
    params.setdefault("registration_budget_s", "0.0")
    proc = start_node(out, params) if start else None
    init_rclpy()
    node = rclpy.create_node("amodalgen3d_replay")
    ts = typestore()
    rec_path = out / "outputs_bag"
    if rec_path.exists():
        import shutil

        shutil.rmtree(rec_path)
    writer = Writer(rec_path, version=9)
    writer.open()
    last: dict[int, object] = {}
    deleted: set[int] = set()
    counts = {k: 0 for k in OUTPUT_TOPICS}
    conns = {}

    def recorder(key: str, topic: str):
        def cb(msg):
            counts[key] += 1
            t_ns = node.get_clock().now().nanoseconds
            writer.write(conns[key], t_ns, serialize_message(msg))
            if key == "objects":
                for o in msg.objects:
                    last[o.track_id] = o
            elif key == "markers":
                deleted.update(m.id for m in msg.markers if m.action == 2)
        return cb

    q = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    for key, msgtype in OUTPUT_TOPICS.items():
        topic = f"{node_name}/{key}"
        conns[key] = writer.add_connection(topic, msgtype, typestore=ts)
        node.create_subscription(msg_class(msgtype), topic, recorder(key, topic), q)
    clock_pub = node.create_publisher(Clock, "/clock", 10)
    from diagnostic_msgs.msg import DiagnosticArray

    node_state: dict[str, str] = {}

    def on_diag(msg):
        for st in msg.status:
            if st.name.startswith("amodalgen3d_node"):
                node_state.update({kv.key: kv.value for kv in st.values})
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    try:
        with AnyReader([bag]) as reader:
            pubs = {c.topic: node.create_publisher(msg_class(c.msgtype), c.topic, q) for c in reader.connections}
            # both ends matched on every input topic (tf is optional: the node may not listen)
            try:
                wait_until_connected(node, [p for t, p in pubs.items() if not t.startswith("/tf")], 60.0, proc)
            except RuntimeError as e:
                raise RuntimeError(f"{e}; see {out / 'node.log'}") from None
            wall0, bag0, t_last = time.monotonic(), None, 0
            msgs = list(reader.messages())
            for conn, t_ns, raw in tqdm(msgs, desc="replay", unit="msg", disable=not progress):
                bag0 = t_ns if bag0 is None else bag0
                if rate > 0:
                    due = wall0 + (t_ns - bag0) * 1e-9 / rate
                    while time.monotonic() < due:
                        rclpy.spin_once(node, timeout_sec=max(0.0, min(0.01, due - time.monotonic())))
                clock_pub.publish(Clock(clock=_stamp(t_ns)))
                pubs[conn.topic].publish(deserialize_message(bytes(raw), msg_class(conn.msgtype)))
                rclpy.spin_once(node, timeout_sec=0.0)
                t_last = t_ns
        # the bag is done: let sim time run on so every track expires and gets its final result

        def finished() -> bool:
            # the node holds no track, has no final run in flight, and every result was deleted
            return bool(last) and set(last) <= deleted and node_state.get("buffer_tracks") == "0" \
                and node_state.get("frames_pending") == "0" \
                and node_state.get("queue_tracks_due") == "0" and node_state.get("queue_tracks_expiring") == "0" \
                and counts["objects"] >= float(node_state.get("objects_published", "inf"))

        sim = t_last
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            sim += 100_000_000
            clock_pub.publish(Clock(clock=_stamp(sim)))
            rclpy.spin_once(node, timeout_sec=0.1)
            if finished():
                break
        done = finished()
    finally:
        writer.close()
        node.destroy_node()
        rclpy.try_shutdown()
        if proc is not None:
            stop_process(proc, 10.0)
    import trimesh

    meshes = {}
    for tid, o in sorted(last.items()):
        v, f = mesh_from_msg(o)
        m = trimesh.Trimesh(v, f, process=False)
        path = out / f"track_{tid}.ply"
        m.export(path)
        meshes[tid] = {"mesh": str(path), "frame_id": o.header.frame_id,
                       "stamp": o.header.stamp.sec + o.header.stamp.nanosec * 1e-9, "n_views_used": o.n_views_used,
                       "method": o.method, "inference_seconds": round(o.inference_seconds, 3),
                       "n_vertices": len(v), "watertight": bool(m.is_watertight),
                       "mean_confidence": float(np.mean(o.vertex_confidence)) if len(o.vertex_confidence) else None}
    summary = {"bag": str(bag), "complete": done, "outputs_recorded": counts, "tracks": meshes,
               "node_diagnostics": node_state}
    (out / "replay.json").write_text(json.dumps(summary, indent=1))
    return summary


def _stamp(ns: int):
    from builtin_interfaces.msg import Time

    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))
