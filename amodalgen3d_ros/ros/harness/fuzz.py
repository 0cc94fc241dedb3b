"""A process-level fuzz run against the real node: a storm of malformed and hostile inputs over
DDS, then valid frames, which must still be reconstructed correctly.

    amodalgen3d bench --fuzz 3000 [--out bench_out/fuzz] [--same-stamp]

Every input is a whole frame (colour, depth, camera info, labels) with one thing wrong, drawn
from the kinds below. With ``same_stamp`` every spoiled frame is followed by the valid frame with
the same stamp: none of the valid frames may be lost to the spoiled ones (``valid_frames_lost``).
Reported: inputs tried per kind, what the node counted (rejections by
cause, sync drops, frames without a usable target), whether it stayed alive, its memory (node
and reconstruction process) before and after, and the check on the valid frames after the storm.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

KINDS = ("unknown_encoding", "short_data", "long_data", "zero_size", "huge_declared", "nan_inf_negative_depth",
         "label_max_uint32", "huge_track_ids", "zero_focal", "nan_intrinsics", "stamp_backwards", "stamp_duplicate",
         "no_target", "wrong_size_labels", "odd_step")
# the kinds that make a message malformed (the others are valid frames with odd content or stamps)
MALFORMED = ("unknown_encoding", "short_data", "long_data", "zero_size", "huge_declared", "label_max_uint32",
             "zero_focal", "nan_intrinsics", "wrong_size_labels", "odd_step")


def _frame(kind: str, view, stamp_ns: int, rng: np.random.Generator):
    """The four messages of one frame, spoiled in the way ``kind`` names."""
    from sensor_msgs.msg import Image

    from ..conversions import view_to_msgs

    c, d, i, lab = view_to_msgs(view, stamp_ns)
    target = [c, d, lab][int(rng.integers(3))]
    h, w = view.labels.shape
    if kind == "unknown_encoding":
        target.encoding = str(rng.choice(["yuv422", "", "rgb16", "8UC3", "bayer_rggb8", "64FC1"]))
    elif kind == "short_data":
        target.data = bytes(target.data)[: int(rng.integers(0, len(target.data)))]
    elif kind == "long_data":
        target.data = bytes(target.data) + bytes(int(rng.integers(1, 5000)))
    elif kind == "zero_size":
        target.height, target.width = (0, w) if rng.random() < 0.5 else (h, 0)
    elif kind == "huge_declared":  # a header that claims gigabytes, with little data behind it
        target.height, target.width = int(rng.integers(50_000, 2**31 - 1)), int(rng.integers(50_000, 2**31 - 1))
        target.step = min(target.width * 4, 2**32 - 1)
    elif kind == "nan_inf_negative_depth":
        z = view.depth_m.astype(np.float32).copy()
        m = rng.random(z.shape) < 0.5
        z[m] = rng.choice(np.array([np.nan, np.inf, -np.inf, -1.0, -1e9], np.float32), int(m.sum()))
        d = Image(header=d.header, height=h, width=w, encoding="32FC1", step=w * 4)
        d.data = z.tobytes()
    elif kind == "label_max_uint32":  # 32SC1 holding 2^32-1 (= -1 as int32)
        labels = view.labels.astype(np.uint32)
        labels[rng.random(labels.shape) < 0.01] = 2**32 - 1
        lab = Image(header=lab.header, height=h, width=w, encoding="32SC1", step=w * 4)
        lab.data = labels.tobytes()
    elif kind == "huge_track_ids":  # valid but enormous ids: new tracks, bounded by max_tracks
        labels = view.labels.astype(np.int32)
        labels[labels > 0] += int(rng.integers(1, 2**31 - 1 - int(labels.max())))
        lab = Image(header=lab.header, height=h, width=w, encoding="32SC1", step=w * 4)
        lab.data = labels.tobytes()
    elif kind == "zero_focal":
        k = list(i.k)
        k[0 if rng.random() < 0.5 else 4] = 0.0
        i.k = k
    elif kind == "nan_intrinsics":
        k = list(i.k)
        k[int(rng.choice([0, 2, 4, 5]))] = float(rng.choice([np.nan, np.inf, -500.0]))
        i.k = k
    elif kind == "no_target":
        lab.data = bytes(len(lab.data))
    elif kind == "wrong_size_labels":
        labels = view.labels[: h // 2, : w // 2].astype(np.uint16)
        lab = Image(header=lab.header, height=h // 2, width=w // 2, encoding="mono16", step=(w // 2) * 2)
        lab.data = labels.tobytes()
    elif kind == "odd_step":  # a step smaller than a row
        target.step = max(0, int(target.step) - int(rng.integers(1, 8)))
    # stamp_backwards and stamp_duplicate: valid frames whose stamps are chosen by the caller
    return c, d, i, lab


def run_fuzz(out: str | Path, n_inputs: int = 3000, seed: int = 0, rate_hz: float = 20.0,
             params: dict | None = None, progress: bool = True, same_stamp: bool = False) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from tqdm import tqdm

    from amodalgen3d_ros.msg import ReconstructedObjectArray

    from ...geometry import invert
    from ...tools import synth
    from ..conversions import mesh_from_msg
    from .node_bench import ProcessTree
    from .peer import init_rclpy, input_publishers, last_diagnostics, stop_process, wait_until_connected
    from .replay import start_node

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scene = synth.render_scene(7, "heldout", 0)
    views = scene.views
    topics = {"color_topic": "/fz/color", "depth_topic": "/fz/depth", "camera_info_topic": "/fz/info",
              "labels_topic": "/fz/labels"}
    proc = start_node(out, {**topics, "method": "support_hull", "use_sim_time": "false", "max_frame_rate_hz": "0.0",
                            "min_reconstruct_interval_s": "0.0", "diagnostics_period_s": "0.5",
                            "track_timeout_s": "1.0", **(params or {})})
    tree = ProcessTree(proc.pid)

    def rss_mb() -> float:
        return tree.sample()[1]

    init_rclpy()
    node = rclpy.create_node("amodalgen3d_fuzz")
    pubs = input_publishers(node, topics, 100)
    diags: list = []
    objects: list = []
    node.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
    node.create_subscription(ReconstructedObjectArray, "/amodalgen3d_node/objects", objects.append, 10)
    rng = np.random.default_rng(seed)
    def publish(kind: str, view, stamp_ns: int) -> None:
        for p, m in zip(pubs, _frame(kind, view, stamp_ns, rng)):
            p.publish(m)

    kinds = MALFORMED if same_stamp else KINDS
    tried = {k: 0 for k in kinds}
    valid_sent = 0
    try:
        wait_until_connected(node, pubs, 60.0, proc)
        rss_before = rss_mb()
        stamp = 1_000_000_000
        last_good = stamp
        period = 1.0 / rate_hz
        t_next = time.monotonic()
        if same_stamp:  # one valid frame first, taken by the node (it learns the camera's image size from it)
            publish("valid", views[0], stamp)
            valid_sent += 1
            end = time.monotonic() + 30.0
            while time.monotonic() < end and not (diags and diags[-1].status and any(
                    x.key == "buffer_frames" and x.value != "0" for x in diags[-1].status[0].values)):
                rclpy.spin_once(node, timeout_sec=0.1)
            t_next = time.monotonic()
        for _ in tqdm(range(n_inputs), desc="fuzz", unit="frame", disable=not progress):
            kind = kinds[int(rng.integers(len(kinds)))]
            tried[kind] += 1
            view = views[int(rng.integers(len(views)))]
            if kind == "stamp_backwards":
                s = last_good - int(rng.integers(1, 10)) * 100_000_000
            elif kind == "stamp_duplicate":
                s = last_good
            else:
                stamp += 33_000_000
                s = last_good = stamp  # was never advanced: every "duplicate" repeated the first stamp
            publish(kind, view, s)
            if same_stamp:  # the valid frame, after the spoiled one, with its stamp
                publish("valid", view, s)
                valid_sent += 1
            t_next += period
            while time.monotonic() < t_next:
                rclpy.spin_once(node, timeout_sec=max(0.0, t_next - time.monotonic()))
            if proc.poll() is not None:
                break
        alive_after_storm = proc.poll() is None
        # the storm is over: its tracks expire (no input for track_timeout_s), then valid frames
        # of the scene, which must still be reconstructed well, in the first valid view's frame
        n_sent = sum(tried.values())

        def drained() -> tuple:
            """What the node received so far, or None while it still holds storm tracks or frames."""
            kv = last_diagnostics(diags)
            if kv.get("buffer_tracks") != "0" or kv.get("queue_tracks_expiring") != "0" or kv.get("frames_pending") != "0":
                return None
            return tuple(kv.get(f"received_{n}") for n in ("color", "depth", "camera_info", "labels"))

        # The storm is over once the node holds nothing and received no more for 2 s: a storm
        # frame arriving among the valid ones (seen in CI) would test the storm, not recovery.
        end = time.monotonic() + 60.0
        last, since = None, time.monotonic()
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
            now_state = drained()
            if now_state != last:
                last, since = now_state, time.monotonic()
            elif now_state is not None and time.monotonic() - since >= 2.0:
                break
        storm_tracks_expired = last is not None and time.monotonic() - since >= 2.0
        storm_received = dict(zip(("color", "depth", "camera_info", "labels"), map(int, last or (0, 0, 0, 0))))
        t_valid = time.monotonic()
        n_before = len(objects)
        first_valid_ns = stamp + 500_000_000
        for v in views[:4]:
            stamp += 500_000_000
            publish("valid", v, stamp)
            rclpy.spin_once(node, timeout_sec=0.05)
        ok_result = None
        end = time.monotonic() + 120
        while time.monotonic() < end and proc.poll() is None:
            rclpy.spin_once(node, timeout_sec=0.1)
            got = [o for a in objects[n_before:] for o in a.objects if o.track_id == scene.target_id
                   and o.n_views_used >= 2 and o.header.stamp.sec * 10**9 + o.header.stamp.nanosec >= first_valid_ns]
            if got:
                ok_result = got[-1]
                break
        seconds_to_valid = time.monotonic() - t_valid
        for _ in range(15):  # one more diagnostics period
            rclpy.spin_once(node, timeout_sec=0.1)
        rss_after = rss_mb()
        alive = proc.poll() is None
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        rc = stop_process(proc, 15.0)
    kv = last_diagnostics(diags)
    check = {"received": ok_result is not None}
    if ok_result is not None:
        import trimesh

        v, f = mesh_from_msg(ok_result)
        mesh = trimesh.Trimesh(v, f, process=True)
        truth = scene.target_mesh.copy().apply_transform(invert(views[0].T_world_cam))
        check.update({"watertight": bool(mesh.is_watertight),
                      "centroid_error_m": float(np.linalg.norm(mesh.centroid - truth.centroid)),
                      "extent_ratio": float(mesh.extents.max() / truth.extents.max()),
                      "seconds_after_storm": round(seconds_to_valid, 2)})
        check["ok"] = check["watertight"] and check["centroid_error_m"] < 0.03 and 0.6 < check["extent_ratio"] < 1.6
    counted = {k: int(float(v)) for k, v in kv.items() if k.startswith(("rejected_", "sync_dropped", "sync_time", "received_",
                                                                       "frames_dropped", "frames_without"))
               or k in ("buffer_frames", "buffer_views_barely_visible", "buffer_tracks_dropped_capacity", "sync_matched",
                        "reconstructions_failed")}
    report = {"inputs_tried": int(sum(tried.values())), "tried_by_kind": tried,
              "rejected_total": int(sum(v for k, v in counted.items() if k.startswith("rejected_"))),
              "storm_messages_sent_per_input": n_sent, "storm_messages_received": storm_received,
              "node_counted": counted, "crashes": int(not alive_after_storm or not alive),
              "node_exit_code": rc, "storm_tracks_expired": storm_tracks_expired,
              "rss_mb_before": round(rss_before, 1), "rss_mb_after": round(rss_after, 1),
              "valid_after_storm": check}
    if same_stamp:  # every storm stamp had one valid frame: each must reach the view buffer (the 4 after it too)
        report.update(valid_frames_sent=valid_sent, valid_frames_lost=valid_sent + 4 - counted.get("buffer_frames", 0))
    (out / "fuzz.json").write_text(json.dumps(report, indent=1))
    return report
