"""The benchmark: methods on the same held-out scenes, in millimetres, with seen/unseen splits.

Also the pose-estimation benchmark (unposed registration against ground-truth poses) and, for
speed, median seconds per object. Results are written as JSON (every row plus summaries, with
machine and versions) and Markdown.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.spatial import cKDTree
from tqdm import tqdm

from ..amodal_prior import PRIOR_CHANNELS, load_prior, torch_runner
from ..features import FeatureConfig, cube_frame, prior_views
from ..geometry import invert, resolve_poses, rotation_error_deg
from ..observation import observe
from ..reconstruct import reconstruct
from ..views import View, read_views_dir
from . import synth
from .metrics import confidence_auroc, confidence_bins, ece_from_bins, evaluate, sample_surface, seen_mask
from .train import prepare_prior

MAIN_METRICS = ["chamfer_l1_mm", "fscore_5mm", "fscore_10mm", "iou", "accuracy_seen_mm",
                "completeness_unseen_mm", "chamfer_seen_mm", "chamfer_unseen_mm", "fscore_5mm_unseen", "seconds"]
LOWER_IS_BETTER = {"chamfer_l1_mm", "accuracy_seen_mm", "completeness_unseen_mm", "chamfer_seen_mm",
                   "chamfer_unseen_mm", "seconds", "accuracy_mm", "completeness_mm"}
OCCLUSION_BANDS = [0.0, 0.2, 0.4, 0.6, 0.8, 1.01]
BENCH_SEED = 1234  # the held-out scenes every benchmark run uses


class SceneFolderError(ValueError):
    """The --data folder holds scenes made otherwise than the run asks for: the user's to fix."""


@dataclass(frozen=True)
class BenchConfig:
    data: str = "data/heldout"
    split: str = "heldout"
    scenes: int = 60
    views: tuple[int, ...] = (1, 2, 4)
    methods: tuple[str, ...] = ("visible", "convex_hull", "support_hull", "symmetry", "tsdf")
    unposed: bool = False
    depth_noise: bool = True
    workers: int = 2
    shapes: tuple[str, ...] = ()  # real mesh folders for the targets (synth.SynthConfig.shapes)
    plain_table_prob: float = 0.0
    seed: int = BENCH_SEED


def ensure_scenes(cfg: BenchConfig, progress: bool = True) -> list[Path]:
    """The benchmark's scenes, synthesized once (deterministic for the seed) if missing."""
    root = Path(cfg.data)
    manifest = root / "manifest.json"
    synth_cfg = synth.SynthConfig(depth_noise=cfg.depth_noise, shapes=cfg.shapes, plain_table_prob=cfg.plain_table_prob)
    if manifest.exists():  # scenes made otherwise must not be measured under this config's name
        m = json.loads(manifest.read_text())
        made_cfg = m.get("config", {})
        made = {"seed": m.get("seed"), "split": m.get("split"), "depth_noise": made_cfg.get("depth_noise"),
                "shapes": list(made_cfg.get("shapes", [])), "plain_table_prob": made_cfg.get("plain_table_prob", 0.0)}
        want = {"seed": cfg.seed, "split": cfg.split, "depth_noise": cfg.depth_noise, "shapes": list(cfg.shapes),
                "plain_table_prob": cfg.plain_table_prob}
        if made != want:
            raise SceneFolderError(f"{root} holds scenes made with {made}, not {want}: choose another --data folder"
                                   f"{' or pass --seed ' + str(made['seed']) if made['seed'] != want['seed'] else ''}")
    have = synth.scene_dirs(root)
    if len(have) < cfg.scenes:
        synth.synth(root, cfg.scenes, cfg.seed, cfg.split, synth_cfg, workers=cfg.workers, progress=progress)
        have = synth.scene_dirs(root)
    return have[:cfg.scenes]


def _clean_depth(scene: Path, i: int) -> np.ndarray:
    raw = cv2.imread(str(scene / "gt" / f"depth_clean_{i:03d}.png"), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise FileNotFoundError(scene / "gt" / f"depth_clean_{i:03d}.png")
    return raw.astype(np.float32) / 1000.0


def method_label(method: str) -> str:
    """A table label without slashes: "amodalgen3d@runs/abl_x/flow.safetensors" -> "amodalgen3d@abl_x",
    "...?decoder=runs/abl_x/decoder.safetensors" -> "...?decoder=abl_x"."""
    head, _, query = method.partition("?")
    if "@" in head and "/" in head:  # idempotent: a label passes through unchanged
        base, _, weights = head.partition("@")
        head = f"{base}@{Path(weights).parent.name}"
    query = "&".join(f"{k}={Path(v).parent.name}" if "/" in v else kv
                     for kv in query.split("&") if kv for k, _, v in [kv.partition("=")])
    return head + (f"?{query}" if query else "")


def seen_by_views(scene: Path, vs, gt: dict, gt_pts_world: np.ndarray, n: int) -> np.ndarray:
    """Which truth surface points the scene's first n views saw (their true poses, exact depth)."""
    truth_views = [View(v.color, v.depth_m, v.K, v.labels, np.asarray(gt["T_world_camera"][i]).reshape(4, 4),
                        name=v.name) for i, v in enumerate(vs.views[:n])]
    return seen_mask(gt_pts_world, truth_views, vs.target_id, [_clean_depth(scene, i) for i in range(n)])


def bench_scene(args: tuple) -> list[dict]:
    scene, cfg = args
    scene = Path(scene)
    vs = read_views_dir(scene / "views")
    gt = synth.load_gt(scene)
    gt_mesh = gt["mesh"]
    gt_pts_world = sample_surface(gt_mesh, 20000, seed=0)
    T_world_ref = np.asarray(gt["T_world_camera"][0]).reshape(4, 4)
    rows = []
    for n in cfg.views:
        if n > len(vs.views):
            continue
        seen = seen_by_views(scene, vs, gt, gt_pts_world, n)
        views = vs.views[:n]
        if cfg.unposed:
            views = [View(v.color, v.depth_m, v.K, v.labels, None, v.stamp_s, v.name) for v in views]
        occ = float(np.mean(gt["occlusion"][:n]))
        for method in cfg.methods:
            row = {"scene": scene.name, "family": gt["family"], "shape": gt.get("shape", ""), "views": n,
                   "method": method_label(method),
                   "occlusion": occ, "posed": not cfg.unposed}
            try:
                t0 = time.perf_counter()
                rec = reconstruct(views, vs.target_id, method)
                row["seconds"] = time.perf_counter() - t0
                T = np.eye(4) if rec.frame == "world" else invert(T_world_ref)
                g = gt_mesh.copy().apply_transform(T)
                pts = gt_pts_world @ T[:3, :3].T + T[:3, 3]
                row.update(evaluate(rec.mesh, g, seen, pts))
                verts = np.asarray(rec.mesh.vertices)
                row["confidence_auroc"] = confidence_auroc(verts, rec.vertex_confidence, pts)
                # one query of the truth serves the object's ECE and the pooled one (its bins)
                bins = confidence_bins(verts, rec.vertex_confidence, pts)
                row["confidence_ece"] = ece_from_bins(bins, min_count=10)  # NaN: fewer than 10 inferred
                if np.isfinite(row["confidence_ece"]):  # some vertices were inferred
                    row["confidence_bins"] = bins.tolist()
                row["n_views_used"] = rec.n_views_used
                row["bodies"] = int(rec.mesh.body_count)  # separate pieces in the one object's mesh
                if rec.hypotheses:
                    row.update(hypothesis_metrics(rec.hypotheses, g, seen, pts))
            except Exception as e:  # a failure is a result too: counted, not hidden
                row["error"] = f"{e.__class__.__name__}: {e}"
            rows.append(row)
    return rows


HYPOTHESIS_METRICS = ["chamfer_best_hypothesis_mm", "chamfer_hypothesis_mean_mm", "completeness_unseen_best_hypothesis_mm",
                      "hypotheses_spread_mm"]


def hypothesis_metrics(hypotheses: list, gt_mesh, seen: np.ndarray, gt_points: np.ndarray) -> dict:
    """What a generator's several samples cover: the best one's Chamfer and unseen completeness (an
    oracle's pick, the usual measure of multi-hypothesis completion), their mean, and how far apart
    they are (mean Chamfer between pairs, mm)."""
    ev = [evaluate(h, gt_mesh, seen, gt_points) for h in hypotheses]
    pts = [sample_surface(h, 5000, seed=3) for h in hypotheses]
    pairs = [0.5 * (cKDTree(pts[j]).query(pts[i])[0].mean() + cKDTree(pts[i]).query(pts[j])[0].mean()) * 1000
             for i in range(len(pts)) for j in range(i + 1, len(pts))]
    return {"hypotheses": len(hypotheses),
            "chamfer_best_hypothesis_mm": min(e["chamfer_l1_mm"] for e in ev),
            "chamfer_hypothesis_mean_mm": float(np.mean([e["chamfer_l1_mm"] for e in ev])),
            "completeness_unseen_best_hypothesis_mm": float(np.nanmin([e.get("completeness_unseen_mm", np.nan) for e in ev])),
            "hypotheses_spread_mm": float(np.mean(pairs)) if pairs else 0.0}


def pooled_confidence(rows: list[dict]) -> dict | None:
    """The rows' inferred vertices pooled (their confidence_bins summed): count, mean confidence,
    fraction within 5 mm and ECE; None if no row has any."""
    bins = [np.asarray(r["confidence_bins"]) for r in rows if "confidence_bins" in r]
    total = np.sum(bins, axis=0) if bins else None
    if total is None or total[0].sum() == 0:
        return None
    nv = total[0].sum()
    return {"vertices": int(nv), "mean_confidence": float(total[1].sum() / nv), "hit_rate": float(total[2].sum() / nv),
            "ece": ece_from_bins(total)}


FAMILY_METRICS = ("chamfer_l1_mm", "fscore_5mm", "iou", "accuracy_seen_mm", "completeness_unseen_mm")


def summarize(rows: list[dict]) -> dict:
    ok = [r for r in rows if "error" not in r]
    out: dict = {"by_views": {}, "by_occlusion": {}, "by_family": {}, "failures": {}}
    for r in rows:
        if "error" in r:
            key = f"{r['views']}/{r['method']}"
            out["failures"][key] = out["failures"].get(key, 0) + 1
    for n in sorted({r["views"] for r in ok}):
        for m in dict.fromkeys(r["method"] for r in ok):
            sel = [r for r in ok if r["views"] == n and r["method"] == m]
            if not sel:
                continue
            stats: dict = {"n": len(sel)}
            for k in MAIN_METRICS + ["accuracy_mm", "completeness_mm", "watertight", "confidence_auroc", "confidence_ece",
                                     *HYPOTHESIS_METRICS]:
                vals = np.array([float(r[k]) for r in sel if k in r and r[k] is not None], float)
                vals = vals[np.isfinite(vals)]
                if len(vals):
                    stats[k] = {"mean": float(vals.mean()), "median": float(np.median(vals))}
            pooled = pooled_confidence(sel)
            if pooled:  # over all inferred vertices of all objects: the calibration a user of many objects sees
                stats["confidence_pooled"] = pooled
            out["by_views"][f"{n}/{m}"] = stats
            for lo, hi in zip(OCCLUSION_BANDS[:-1], OCCLUSION_BANDS[1:]):
                b = [r for r in sel if lo <= r["occlusion"] < hi]
                if b:
                    band = out["by_occlusion"][f"{n}/{m}/{int(lo * 100)}-{int(min(hi, 1) * 100)}%"] = _means(
                        b, ("chamfer_l1_mm", "fscore_5mm", "fscore_10mm", "iou", "chamfer_unseen_mm"))
                    pooled = pooled_confidence(b)
                    if pooled:  # the more is hidden, the more a confidence may over-state: its pooled gap per band
                        band["confidence_minus_within_5mm"] = pooled["mean_confidence"] - pooled["hit_rate"]
            # which shapes a method finds hard (thin shells, held-out families): means per family
            for fam in sorted({r["family"] for r in sel if "family" in r}):
                out["by_family"][f"{n}/{m}/{fam}"] = _means([r for r in sel if r.get("family") == fam], FAMILY_METRICS)
    return out


def _means(rows: list[dict], keys: tuple[str, ...]) -> dict:
    """A group of rows (an occlusion band, a family): its size and the mean of each key (NaN-free)."""
    return {"n": len(rows), **{k: float(np.nanmean([float(r[k]) for r in rows])) for k in keys}}


def markdown(summary: dict, title: str) -> str:
    cols = ["chamfer_l1_mm", "fscore_5mm", "fscore_10mm", "iou", "accuracy_seen_mm", "completeness_unseen_mm",
            "fscore_5mm_unseen", "confidence_auroc", "confidence_ece", "seconds"]
    lines = [f"## {title}", "", "mean (median) per object; lower is better for mm and seconds; confidence_auroc: how well the "
             "per-vertex confidence ranks the inferred vertices' errors (5 mm; 0.5 = no information); confidence_ece: its "
             "expected calibration error as P(within 5 mm) (0 = calibrated)", "",
             "| views | method | n | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 3)]
    for key, st in summary["by_views"].items():
        n, m = key.split("/")
        cells = []
        for c in cols:
            if c in st:
                cells.append(f"{st[c]['mean']:.3g} ({st[c]['median']:.3g})")
            else:
                cells.append("-")
        lines.append(f"| {n} | {m} | {st['n']} | " + " | ".join(cells) + " |")
    pooled = {k: st["confidence_pooled"] for k, st in summary["by_views"].items() if "confidence_pooled" in st}
    if pooled:
        lines += ["", "### Confidence over all inferred vertices (pooled over objects)", "",
                  "mean confidence against the fraction within 5 mm of the truth; ECE over the pooled vertices", "",
                  "| views | method | vertices | mean_confidence | within_5mm | ece |", "|---|---|---|---|---|---|"]
        for key, p in pooled.items():
            n, m = key.split("/")
            lines.append(f"| {n} | {m} | {p['vertices']} | {p['mean_confidence']:.3f} | {p['hit_rate']:.3f} | {p['ece']:.3f} |")
    hyp = {k: st for k, st in summary["by_views"].items() if "chamfer_best_hypothesis_mm" in st}
    if hyp:
        lines += ["", "### Hypotheses (the generator's samples as meshes)", "",
                  "best: the sample nearest the truth (an oracle's pick); spread: mean Chamfer between two samples", "",
                  "| views | method | chamfer_l1_mm | " + " | ".join(HYPOTHESIS_METRICS) + " |", "|---|---|---|---|---|---|---|"]
        for key, st in hyp.items():
            n, m = key.split("/")
            lines.append(f"| {n} | {m} | {st['chamfer_l1_mm']['mean']:.3g} | "
                         + " | ".join(f"{st[c]['mean']:.3g}" if c in st else "-" for c in HYPOTHESIS_METRICS) + " |")
    lines += ["", "### By occlusion band (mean over the used views' hidden share)", "",
              "confidence - within_5mm: the band's inferred vertices pooled, mean confidence minus the fraction within "
              "5 mm (positive: over-confident)", "",
              "| views | method | band | n | chamfer_l1_mm | fscore_5mm | fscore_10mm | iou | chamfer_unseen_mm "
              "| confidence - within_5mm |", "|---|---|---|---|---|---|---|---|---|---|"]
    for key, st in summary["by_occlusion"].items():
        n, m, band = key.split("/")
        gap = f"{st['confidence_minus_within_5mm']:+.3f}" if "confidence_minus_within_5mm" in st else "-"
        lines.append(f"| {n} | {m} | {band} | {st['n']} | {st['chamfer_l1_mm']:.3g} | {st['fscore_5mm']:.3g} | "
                     f"{st['fscore_10mm']:.3g} | {st['iou']:.3g} | {st['chamfer_unseen_mm']:.3g} | {gap} |")
    if summary.get("by_family"):  # absent from summaries written before it
        lines += ["", "### By shape family", "", "| views | method | family | n | " + " | ".join(FAMILY_METRICS) + " |",
                  "|" + "---|" * (len(FAMILY_METRICS) + 4)]
        for key, st in summary["by_family"].items():
            n, m, fam = key.split("/", 2)
            lines.append(f"| {n} | {m} | {fam} | {st['n']} | " + " | ".join(f"{st[k]:.3g}" for k in FAMILY_METRICS) + " |")
    if summary["failures"]:
        lines += ["", "Failures (counted, not hidden): " + ", ".join(f"{k}: {v}" for k, v in summary["failures"].items())]
    return "\n".join(lines) + "\n"


def machine_info() -> dict:
    return {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
            **cpu_info(), "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}


def cpu_info(path: str = "/proc/cpuinfo") -> dict:
    """The CPU's model name and its vector-unit flags: the same '2-core CPU' ran onnxruntime 1.7x
    faster than torch on one host and 1.1x on another, so speed figures say which host they are from."""
    try:
        text = Path(path).read_text()
    except OSError:
        return {}
    first: dict[str, str] = {}  # the first core's fields (every core reports the same)
    for ln in text.splitlines():
        key, _, value = ln.partition(":")
        first.setdefault(key.strip(), value.strip())
    model, flags = first.get("model name", ""), first.get("flags", "").split()
    vector = sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "sse4")))
    return {"cpu_model": model, "cpu_vector_flags": " ".join(vector)}


def _pool_map(fn, jobs: list, workers: int, desc: str, progress: bool) -> list:
    out = []
    with tqdm(total=len(jobs), desc=desc, disable=not progress) as bar:
        if workers <= 1:
            for j in jobs:
                out.append(fn(j))
                bar.update()
        else:
            with get_context("spawn").Pool(workers) as pool:
                for r in pool.imap(fn, jobs):
                    out.append(r)
                    bar.update()
    return out


def run_bench(cfg: BenchConfig, out_dir: str | Path, progress: bool = True) -> dict:
    scenes = ensure_scenes(cfg, progress)
    t0 = time.time()
    rows = [r for rs in _pool_map(bench_scene, [(str(s), cfg) for s in scenes], cfg.workers, "bench", progress)
            for r in rs]
    summary = summarize(rows)
    report = {"config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.__dict__.items()},
              "machine": machine_info(), "wall_seconds": time.time() - t0, "summary": summary, "rows": rows}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=1, default=float))
    title = f"Benchmark: {cfg.split}, {len(scenes)} scenes, {'unposed' if cfg.unposed else 'posed'} views"
    (out / "bench.md").write_text(markdown(summary, title))
    return report


# --------------------------------------------------------------------------------------------
# Pose estimation
# --------------------------------------------------------------------------------------------

def bench_poses_scene(args: tuple) -> list[dict]:
    scene, _cfg = args
    vs = read_views_dir(Path(scene) / "views")
    gt = [np.asarray(v.T_world_cam) for v in vs.views]
    unposed = [View(v.color, v.depth_m, v.K, v.labels, None, v.stamp_s, v.name) for v in vs.views]
    poses = resolve_poses(unposed)
    rows = []
    for j in range(1, len(unposed)):
        T_true = invert(gt[0]) @ gt[j]
        z0, zj = np.array([0, 0, 1.0]), T_true[:3, 2]
        baseline = float(np.degrees(np.arccos(np.clip(z0 @ zj, -1, 1))))
        row = {"scene": Path(scene).name, "view": j, "baseline_deg": baseline, "registered": poses.T_out_cam[j] is not None}
        Te = poses.T_out_cam[j]
        if Te is not None:
            row["rot_err_deg"] = rotation_error_deg(Te[:3, :3], T_true[:3, :3])
            row["trans_err_mm"] = float(np.linalg.norm(Te[:3, 3] - T_true[:3, 3]) * 1000)
        reg = poses.registrations[j]
        row["fitness"] = reg.fitness if reg else None
        row["reason"] = reg.reason if reg else ""
        row["by"] = reg.method if reg and reg.ok else ""
        rows.append(row)
    return rows


def run_pose_bench(cfg: BenchConfig, out_dir: str | Path, progress: bool = True) -> dict:
    scenes = ensure_scenes(cfg, progress)
    rows = [r for rs in _pool_map(bench_poses_scene, [(str(s), cfg) for s in scenes], cfg.workers, "poses", progress)
            for r in rs]
    bins = [0, 30, 60, 90, 180]
    table = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = [r for r in rows if lo <= r["baseline_deg"] < hi]
        reg = [r for r in sel if r["registered"]]
        table.append({"baseline": f"{lo}-{hi} deg", "pairs": len(sel),
                      "registered_share": len(reg) / len(sel) if sel else float("nan"),
                      "median_rot_err_deg": float(np.median([r["rot_err_deg"] for r in reg])) if reg else float("nan"),
                      "median_trans_err_mm": float(np.median([r["trans_err_mm"] for r in reg])) if reg else float("nan"),
                      "share_rot_err_over_5deg": float(np.mean([r["rot_err_deg"] > 5 for r in reg])) if reg else float("nan"),
                      "registered_by_objects": sum(r["by"] == "objects" for r in reg)})
    report = {"machine": machine_info(), "table": table, "rows": rows}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "poses.json").write_text(json.dumps(report, indent=1))
    md = ["## Pose estimation of unposed views (each view against the reference view 000)", "",
          "| baseline | pairs | registered | of them by objects | median rot err (deg) | median trans err (mm) "
          "| rot err > 5 deg |",
          "|---|---|---|---|---|---|---|"]
    for t in table:
        md.append(f"| {t['baseline']} | {t['pairs']} | {t['registered_share']:.0%} | {t['registered_by_objects']} | "
                  f"{t['median_rot_err_deg']:.2f} | {t['median_trans_err_mm']:.1f} | {t['share_rot_err_over_5deg']:.0%} |")
    (out / "poses.md").write_text("\n".join(md) + "\n")
    return report


# --------------------------------------------------------------------------------------------
# The 2D amodal prior against the trivial prior "amodal = visible"
# --------------------------------------------------------------------------------------------

def _iou(a: np.ndarray, b: np.ndarray) -> float:
    u = (a | b).sum()
    return float((a & b).sum() / u) if u else float("nan")


def prior_rows(samples: dict[str, np.ndarray], out: np.ndarray) -> list[dict]:
    """Per view crop: IoU of the amodal mask and of its hidden part (amodal, not visible), and
    the error (mm) of the hidden front surface's depth, for the network and the trivial prior
    (amodal = visible; depth of the nearest visible pixel)."""
    # the trivial prior's depth is an input channel already (the nearest visible measurement)
    vis_c, filled_c = PRIOR_CHANNELS.index("visible"), PRIOR_CHANNELS.index("depth_filled")
    rows = []
    for k in range(len(out)):
        x = samples["x"][k].astype(np.float32)
        visible = x[vis_c] > 0.5
        amodal = samples["amodal"][k] > 0
        pred = (out[k, 0] > 0) | visible
        hidden_gt, hidden_pred = amodal & ~visible, pred & ~visible
        row = {"occlusion": float(samples["occlusion"][k]), "hidden_px": int(hidden_gt.sum()),
               "iou_amodal": _iou(pred, amodal), "iou_amodal_trivial": _iou(visible, amodal),
               "iou_hidden": _iou(hidden_pred, hidden_gt), "iou_hidden_trivial": 0.0 if hidden_gt.any() else float("nan")}
        dmask = hidden_gt & (samples["ok"][k] > 0)
        if dmask.any() and x[PRIOR_CHANNELS.index("depth_valid")][visible].any():
            unit_mm = float(samples["crop_m"][k]) * 1000
            true = samples["depth_rel"][k].astype(np.float32)
            nearest = x[filled_c]
            row["hidden_depth_err_mm"] = float(np.mean(np.abs(out[k, 1] - true)[dmask]) * unit_mm)
            row["hidden_depth_err_trivial_mm"] = float(np.mean(np.abs(nearest - true)[dmask]) * unit_mm)
        rows.append(row)
    return rows


def run_prior_bench(weights: str | Path, out_dir: str | Path, data: str = "data/heldout", scenes: int = 60,
                    progress: bool = True) -> dict:
    """Every view of the held-out scenes (no augmentation) through the prior."""
    cfg = BenchConfig(data=data, scenes=scenes)
    ensure_scenes(cfg, progress)
    samples = prepare_prior(data, scenes, 0, BENCH_SEED, augment=False, progress=progress)
    net = load_prior(weights)
    with torch.inference_mode():
        out = np.concatenate([net(torch.from_numpy(samples["x"][i:i + 64].astype(np.float32))).numpy()
                              for i in range(0, len(samples["x"]), 64)])
    rows = prior_rows(samples, out)
    keys = ["iou_amodal", "iou_amodal_trivial", "iou_hidden", "iou_hidden_trivial", "hidden_depth_err_mm",
            "hidden_depth_err_trivial_mm"]

    def stats(sel: list[dict]) -> dict:
        st: dict = {"views": len(sel)}
        for key in keys:
            v = [r[key] for r in sel if key in r and np.isfinite(r[key])]
            st[key] = float(np.mean(v)) if v else float("nan")
        return st

    table = {"all": stats(rows), "with hidden part (>= 20 px)": stats([r for r in rows if r["hidden_px"] >= 20])}
    for lo, hi in zip(OCCLUSION_BANDS[:-1], OCCLUSION_BANDS[1:]):
        table[f"occlusion {int(lo * 100)}-{int(min(hi, 1) * 100)}%"] = stats(
            [r for r in rows if lo <= r["occlusion"] < hi])
    report = {"weights": str(weights), "data": data, "scenes": scenes, "machine": machine_info(), "table": table,
              "rows": rows}
    out_p = Path(out_dir)
    out_p.mkdir(parents=True, exist_ok=True)
    (out_p / "prior.json").write_text(json.dumps(report, indent=1))
    md = [f"## 2D amodal prior vs the trivial prior (amodal = visible), {scenes} held-out scenes, every view", "",
          "IoU of the amodal mask and of its hidden part; error of the hidden front surface's depth "
          "(trivial: the nearest visible pixel's depth).", "",
          "| views | n | amodal IoU | trivial | hidden IoU | trivial | hidden depth err (mm) | trivial |",
          "|---|---|---|---|---|---|---|---|"]
    for name, st in table.items():
        md.append(f"| {name} | {st['views']} | {st['iou_amodal']:.3f} | {st['iou_amodal_trivial']:.3f} | "
                  f"{st['iou_hidden']:.3f} | {st['iou_hidden_trivial']:.3f} | {st['hidden_depth_err_mm']:.1f} | "
                  f"{st['hidden_depth_err_trivial_mm']:.1f} |")
    (out_p / "prior.md").write_text("\n".join(md) + "\n")
    return report


def cube_coverage_scene(args: tuple) -> list[dict]:
    """The object cube with and without the prior: the share of the true surface inside it and
    its side over the true object's largest extent (a larger cube is a coarser grid)."""
    scene, weights, views = args

    torch.set_num_threads(1)
    run = torch_runner(load_prior(weights))
    vs = read_views_dir(Path(scene) / "views")
    gt = synth.load_gt(Path(scene))
    pts = sample_surface(gt["mesh"], 5000, seed=0)
    rows = []
    for n in views:
        obs = observe(vs.views[:n], vs.target_id)
        # only the cube: model_inputs would also build every grid the networks read
        for name, hidden in (("visible", None), ("prior", prior_views(obs, run)[1])):
            T, side = cube_frame(obs, FeatureConfig(), hidden)
            p = (pts - T[:3, 3]) @ T[:3, :3]
            rows.append({"scene": Path(scene).name, "views": n, "cube": name,
                         "coverage": float(np.mean(np.all(np.abs(p) <= side / 2, 1))),
                         "side_over_extent": side / float(np.max(gt["mesh"].extents)),
                         "occlusion": float(np.mean(gt["occlusion"][:n]))})
    return rows


def run_cube_bench(weights: str | Path, out_dir: str | Path, data: str = "data/heldout", scenes: int = 60,
                   views: tuple[int, ...] = (1, 2, 4), workers: int = 2, progress: bool = True) -> dict:
    cfg = BenchConfig(data=data, scenes=scenes)
    dirs = ensure_scenes(cfg, progress)
    rows = [r for rs in _pool_map(cube_coverage_scene, [(str(d), str(weights), views) for d in dirs], workers,
                                  "cube", progress) for r in rs]
    table = []
    for n in views:
        for cube in ("visible", "prior"):
            sel = [r for r in rows if r["views"] == n and r["cube"] == cube]
            table.append({"views": n, "cube": cube, "mean_coverage": float(np.mean([r["coverage"] for r in sel])),
                          "share_below_99": float(np.mean([r["coverage"] < 0.99 for r in sel])),
                          "median_side_over_extent": float(np.median([r["side_over_extent"] for r in sel]))})
    report = {"weights": str(weights), "machine": machine_info(), "table": table, "rows": rows}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cube.json").write_text(json.dumps(report, indent=1))
    md = [f"## The object cube, sized from the visible points alone or with the 2D prior ({len(dirs)} held-out scenes)",
          "", "| views | cube from | true surface inside (mean) | scenes with < 99 % inside | cube side / true extent (median) |",
          "|---|---|---|---|---|"]
    md += [f"| {t['views']} | {t['cube']} | {t['mean_coverage']:.3f} | {t['share_below_99']:.0%} | "
           f"{t['median_side_over_extent']:.2f} |" for t in table]
    (out / "cube.md").write_text("\n".join(md) + "\n")
    return report


def combine(dirs: list[Path], out: Path) -> dict:
    """One table from the rows of earlier runs on the same scenes (e.g. baselines + learned)."""
    reports = [json.loads((d / "bench.json").read_text()) for d in dirs]
    # one method's rows for one scene from two runs would be pooled under one label, silently (two
    # trainings in runs/ of one name do this): refused, with what to do
    rows: list[dict] = []
    first: dict[tuple, Path] = {}
    for d, rep in zip(dirs, reports):
        for r in rep["rows"]:
            r = {**r, "method": method_label(r["method"])}
            key = (r["scene"], r["views"], r["method"], r.get("posed", True))
            if first.setdefault(key, d) != d:
                raise ValueError(f"{key[2]} has rows for {key[0]} at {key[1]} view(s) in both {first[key]} and {d}: "
                                 f"combine one of them, or bench one from weights in a folder of another name (its label)")
            rows.append(r)
    summary = summarize(rows)
    out.mkdir(parents=True, exist_ok=True)
    # a combined run holds its runs' configs: it can be combined again (re-rendered, or with more runs)
    configs = [c for rep in reports for c in rep.get("configs", [rep.get("config")])]
    # each run's machine beside its config (an older combined run did not keep them: unknown)
    machines = [m for rep in reports
                for m in (rep.get("machines", [None] * len(rep["configs"])) if "configs" in rep else [rep.get("machine")])]
    # where each run's rows came from, beside its config: a combined run's own sources, not the
    # folder it was combined into (often a copy that is gone by the next combine)
    sources = [src for d, rep in zip(dirs, reports) for src in rep.get("combined_from", [str(d)])]
    report = {"combined_from": sources, "configs": configs, "machines": machines,
              "combined_on": machine_info(), "summary": summary, "rows": rows}
    (out / "bench.json").write_text(json.dumps(report, indent=1, default=float))
    posed = "unposed" if configs[0].get("unposed") else "posed"
    n = len({r["scene"] for r in rows})
    (out / "bench.md").write_text(markdown(summary, f"Benchmark: {configs[0]['split']}, {n} scenes, {posed} views"))
    return report


PAIRED_KEYS = ("chamfer_l1_mm", "fscore_5mm", "fscore_10mm", "iou", "completeness_unseen_mm")


def paired(a: tuple[Path, str], b: tuple[Path, str], keys: tuple[str, ...] = PAIRED_KEYS, seed: int = 0) -> str:
    """Two methods' rows (each a (bench.json, method label) of any run on the same scenes) paired
    per object (scene, view count): per view count and metric, the mean difference A - B with its
    95 % bootstrap interval (2000 resamples), the median, and on how many objects A is below / above
    B. Objects where either is missing or NaN are left out. Markdown."""
    reports: dict[Path, list] = {}  # each file read once (A and B are often one combined run)

    def rows(path: Path, method: str) -> dict:
        if path not in reports:
            reports[path] = json.loads(Path(path).read_text())["rows"]
        out = {(r["scene"], r["views"]): r for r in reports[path] if method_label(r["method"]) == method_label(method)}
        if not out:
            raise ValueError(f"no rows of '{method}' in {path}")
        return out

    ra, rb = rows(*a), rows(*b)
    rng = np.random.default_rng(seed)
    md = [f"## {a[1]} ({a[0]}) minus {b[1]} ({b[0]}), per object", "",
          "| views | metric | objects | mean A - B [95 % bootstrap] | median | A | B | A below / above B |",
          "|---|---|---|---|---|---|---|---|"]
    for n in sorted({k[1] for k in ra}):
        objects = [k for k in ra if k[1] == n and k in rb]
        for m in keys:
            both = [k for k in objects if ra[k].get(m) is not None and rb[k].get(m) is not None
                    and ra[k][m] == ra[k][m] and rb[k][m] == rb[k][m]]
            if not both:
                continue
            d = np.array([ra[k][m] - rb[k][m] for k in both])
            lo, hi = np.percentile([rng.choice(d, len(d)).mean() for _ in range(2000)], [2.5, 97.5])
            md.append(f"| {n} | {m} | {len(both)} | {d.mean():+.4f} [{lo:+.4f}, {hi:+.4f}] | {np.median(d):+.4f} | "
                      f"{np.mean([ra[k][m] for k in both]):.4f} | {np.mean([rb[k][m] for k in both]):.4f} | "
                      f"{int((d < 0).sum())} / {int((d > 0).sum())} |")
    return "\n".join(md) + "\n"
