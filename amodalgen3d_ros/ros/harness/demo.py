"""The demo: a deterministic synthetic tabletop bag (a camera moving around mutually occluding
objects, realsense-style topics), replayed through the real node; meshes and one PNG out.

    amodalgen3d demo --out demo_out
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import trimesh

from ...tools import synth
from ...tools.metrics import evaluate
from ...views import View

TOPICS = {"color": "/camera/camera/color/image_raw", "depth": "/camera/camera/aligned_depth_to_color/image_raw",
          "info": "/camera/camera/color/camera_info", "labels": "/tracker/instance_labels"}
FRAME_ID = "camera_color_optical_frame"


def demo_scene(seed: int = 3, n_frames: int = 16) -> tuple[synth.Scene, list[View]]:
    """A few objects close together and a camera sweeping 150 degrees around them at 5 Hz."""
    cfg = synth.SynthConfig(n_views=n_frames, occluder_in_front_prob=1.0, min_others=3, max_others=3)
    rng = np.random.default_rng(seed)
    az0 = rng.uniform(0, 2 * np.pi)
    az = [az0 + np.radians(150) * i / (n_frames - 1) for i in range(n_frames)]
    scene = synth.make_scene(rng, "train", cfg, [az[0], az[0], az[0], az[n_frames // 2]])
    center = np.mean([m.bounds.mean(0) for m in scene.meshes[1:]], axis=0)
    K = synth.intrinsics(cfg)
    r = synth.Renderer(scene.meshes)
    views = []
    for i, a in enumerate(az):
        el = np.radians(35 + 10 * np.sin(i / n_frames * np.pi))
        eye = center + 0.6 * np.array([np.cos(el) * np.cos(a), np.cos(el) * np.sin(a), np.sin(el)])
        T = synth.look_at(eye, center)
        depth, idx, pts, nrm = r.cast(K, T, cfg.width, cfg.height)
        labels = np.where(idx >= 0, np.asarray(scene.ids)[np.maximum(idx, 0)], 0)
        views.append(View(synth.shade(scene, idx, pts, nrm, T), synth.add_depth_noise(depth, rng), K,
                          labels.astype(np.int64), T, stamp_s=1.0 + 0.2 * i, name=f"{i:03d}", frame_id=FRAME_ID))
    return scene, views


def write_bag(path: Path, views: list[View], storage: str = "sqlite3") -> Path:
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    from ..conversions import view_to_msgs

    if path.exists():
        import shutil

        shutil.rmtree(path)
    ts = get_typestore(Stores.ROS2_KILTED)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as w:
        conns = {k: w.add_connection(t, "sensor_msgs/msg/CameraInfo" if k == "info" else "sensor_msgs/msg/Image",
                                     typestore=ts) for k, t in TOPICS.items()}
        for v in views:
            ns = int(round(v.stamp_s * 1e9))
            c, d, i, lab = view_to_msgs(v, ns, FRAME_ID)
            for k, m in (("color", c), ("depth", d), ("info", i), ("labels", lab)):
                w.write(conns[k], ns, serialize_message(m))
    return path


def picture(views: list[View], scene: synth.Scene, results: dict, out: Path) -> Path:
    """Inputs (three frames with label outlines) above, completed meshes beside the truth below,
    seen from the far side, which the camera never saw."""
    tiles = []
    for v in (views[0], views[len(views) // 2], views[-1]):
        img = v.color.copy()
        edges = cv2.Canny((v.labels % 251).astype(np.uint8) * 1, 0, 0) > 0
        img[edges] = (255, 255, 0)
        tiles.append(img)
    top = np.hstack(tiles)
    K = views[0].K
    w, h = views[0].width, views[0].height
    center = np.mean([m.bounds.mean(0) for m in scene.meshes[1:]], axis=0)
    back = views[len(views) // 2].T_world_cam[:3, 3] - center  # type: ignore[index]
    eye = center - back * np.array([1, 1, -0.2])  # the far side, a little from above
    eye[2] = center[2] + 0.35
    T = synth.look_at(eye, center)
    truth = synth.Renderer(scene.meshes)
    d, idx, pts, nrm = truth.cast(K, T, w, h)
    gt_img = synth.shade(scene, idx, pts, nrm, T)
    rec_meshes = [scene.meshes[0]] + [r["mesh_world"] for r in results.values()]
    rs = synth.Scene(rec_meshes, [0] + list(results), [scene.materials[0]] + [
        scene.materials[scene.ids.index(t)] for t in results], 1, "", scene.light_dir)
    d2, idx2, pts2, nrm2 = synth.Renderer(rec_meshes).cast(K, T, w, h)
    rec_img = synth.shade(rs, idx2, pts2, nrm2, T)
    blank = np.zeros_like(gt_img)
    cv2.putText(blank, "left: truth, far side", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
    cv2.putText(blank, "middle: completed meshes", (8, 45), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
    y = 75
    for tid, r in results.items():
        cv2.putText(blank, f"track {tid}: F@10mm {r['fscore_10mm']:.2f}, IoU {r['iou']:.2f}", (8, y),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, (200, 255, 200), 1)
        y += 22
    bottom = np.hstack([gt_img, rec_img, blank])
    img = np.vstack([top, bottom])
    path = out / "demo.png"
    cv2.imwrite(str(path), img[:, :, ::-1])
    return path


def run_demo(out: str | Path, storage: str = "sqlite3", params: dict | None = None, rate: float = 1.0) -> dict:
    from .replay import replay

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scene, views = demo_scene()
    bag = write_bag(out / "demo_bag", views, storage)
    summary = replay(bag, out / "replay", rate=rate, params=params or {})
    stamps = {round(v.stamp_s, 3): v for v in views}
    results = {}
    for tid, info in summary["tracks"].items():
        tid = int(tid)
        if tid not in scene.ids:
            continue
        ref = stamps.get(round(info["stamp"], 3))
        mesh = trimesh.load(info["mesh"], process=False)
        if ref is None:
            continue
        mesh.apply_transform(ref.T_world_cam)  # reference optical frame -> world (known to the demo only)
        gt = scene.meshes[scene.ids.index(tid)]
        e = evaluate(mesh, gt)
        results[tid] = {"mesh_world": mesh, **{k: e[k] for k in ("chamfer_l1_mm", "fscore_5mm", "fscore_10mm", "iou")},
                        "n_views_used": info["n_views_used"], "method": info["method"]}
    png = picture(views, scene, results, out)
    report = {"bag": str(bag), "picture": str(png), "complete": summary["complete"],
              "tracks": {t: {k: v for k, v in r.items() if k != "mesh_world"} for t, r in results.items()}}
    (out / "demo.json").write_text(json.dumps(report, indent=1, default=float))
    return report
