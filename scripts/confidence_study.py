"""Which per-vertex quantities carry the confidence from the calibration scenes (training split) to
held-out shapes: the field's slope alone, the slope and the share of the object its views saw
(what ships), or the slope and the vertex's distance from the nearest measured surface. Fitted on
the calibration scenes, judged on held-out-split *validation* scenes (another seed than the
benchmark's 1234, never its scenes).

    .venv/bin/amodalgen3d synth --out data/heldout_val555 --scenes 24 --seed 555 --split heldout
    .venv/bin/python scripts/confidence_study.py collect runs/conf_study calib=data/calib heldout_val=data/heldout_val555
    .venv/bin/python scripts/confidence_study.py fit runs/conf_study calib heldout_val
    .venv/bin/python scripts/confidence_study.py families runs/conf_study heldout_val=data/heldout_val555

`families` prints, per shape family, the confidence each file's stored fit states and how often
the inferred vertices are within 5 mm.

With the local decoder (session 22), which slope carries it: the samples' mean field's (what the
decoder's first calibration read), the decoded field's, or both in quadrature (what ships):

    .venv/bin/python scripts/confidence_study.py decoder-collect runs/conf_decoder calib=data/calib val=data/heldout_val555
    .venv/bin/python scripts/confidence_study.py decoder-fit runs/conf_decoder calib val
"""
import sys
from pathlib import Path

import numpy as np
from compare_weights import objects  # this folder
from scipy.spatial import cKDTree

from amodalgen3d_ros import synth
from amodalgen3d_ros.calibrate import OCCLUSION_GAINS_M, TOL_M, fit_confidence
from amodalgen3d_ros.metrics import auroc, expected_calibration_error, sample_surface
from amodalgen3d_ros.model import LearnedMethod, confidence_from_sigma

W = "amodalgen3d_ros/weights/"
FILES = {"amodalgen3d": W + "amodalgen3d_flow.safetensors", "amodal_regressor": W + "amodal_regressor.safetensors"}
DIST_GAINS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6)


def collect(out: str, sets: dict[str, str]) -> None:
    Path(out).mkdir(parents=True, exist_ok=True)
    for name, w in FILES.items():
        m = LearnedMethod(w, backend="onnxruntime", threads=2)
        for set_name, data in sets.items():
            if Path(f"{out}/{name}_{set_name}.npz").exists():
                continue
            cols: dict[str, list] = {"sigma": [], "dist": [], "views": [], "hit": [], "object": [], "visible": []}
            for i, (_, n, obs, gt) in enumerate(objects(data, 0, 1)):
                fd = m.field(obs)
                mesh, sigma, measured = m.mesh_and_sigma(fd, m.level_for(n))
                v = mesh.vertices
                err, _ = cKDTree(sample_surface(gt, 20000, 0)).query(v[~measured])
                # distance to the nearest measured vertex: how far the shape was extrapolated
                dist = cKDTree(v[measured]).query(v[~measured])[0] if measured.any() else np.full(len(err), 0.1)
                for k, x in (("sigma", sigma[~measured]), ("dist", dist), ("views", np.full(len(err), n)),
                             ("hit", err <= TOL_M), ("object", np.full(len(err), i)),
                             ("visible", np.full(len(err), fd["visible_fraction"]))):
                    cols[k].append(x)
            np.savez(f"{out}/{name}_{set_name}.npz", **{k: np.concatenate(v) for k, v in cols.items()})
            print(name, set_name, "done", flush=True)


def fit(out: str, calib: str, heldout: str) -> None:
    """Three fits on the calibration set, each judged on both: the slope alone, the slope and the
    object's visible share (what calibrate fits), the slope and the distance from measured surface."""
    for name in FILES:
        cal, ho = (dict(np.load(f"{out}/{name}_{s}.npz")) for s in (calib, heldout))
        variants = []
        # each extra term is gain x (1 - x): x the visible share, or 1 - the distance in metres, so
        # the distance enters as s^2 = (scale sigma)^2 + floor^2 + (gain d)^2, fitted the same way
        visible, near = (lambda d: d["visible"]), (lambda d: 1.0 - d["dist"])
        for label, term, gains in (("slope only", visible, (0.0,)), ("slope and visible share", visible, OCCLUSION_GAINS_M),
                                   (f"slope and distance (gain from {DIST_GAINS})", near, DIST_GAINS)):
            fc = fit_confidence(cal["sigma"], cal["hit"], term(cal), gains)
            variants.append((f"{label}: scale {fc['sigma_scale']} floor {fc['sigma_floor_m']} gain "
                             f"{fc['occlusion_gain_m']} brier {fc['brier']:.4f}",
                             lambda d, fc=fc, term=term: confidence_from_sigma(
                                 d["sigma"], fc["sigma_scale"], fc["sigma_floor_m"], TOL_M, fc["occlusion_gain_m"], term(d))))
        for label, c_of in variants:
            print(f"{name}, {label}")
            for set_name, d in ((calib, cal), (heldout, ho)):
                c = c_of(d)
                per_view = [expected_calibration_error(c[d["views"] == n], d["hit"][d["views"] == n]) for n in (1, 2, 4)]
                low = d["visible"] < 0.6
                print(f"  {set_name}: ECE {expected_calibration_error(c, d['hit']):.3f} "
                      f"({' / '.join(f'{e:.3f}' for e in per_view)}) AUROC {auroc(c, d['hit']):.3f} "
                      f"conf {c.mean():.3f} hit {d['hit'].mean():.3f}; conf - hit where the visible share "
                      f"< 0.6 {c[low].mean() - d['hit'][low].mean():+.3f}, >= 0.6 {c[~low].mean() - d['hit'][~low].mean():+.3f}")


def decoder_collect(out: str, sets: dict[str, str]) -> None:
    """Per inferred vertex of each shipped network followed by the local decoder: the spread read
    from the decoded field and from the samples' mean field (mesh_and_sigmas), the object's
    visible share and whether it is within 5 mm."""
    Path(out).mkdir(parents=True, exist_ok=True)
    for name, w in FILES.items():
        m = LearnedMethod(w, backend="onnxruntime", threads=2, decoder=1)
        for set_name, data in sets.items():
            if Path(f"{out}/{name}_{set_name}.npz").exists():
                continue
            cols: dict[str, list] = {k: [] for k in ("sigma_decoded", "sigma_coarse", "views", "hit", "object", "visible")}
            for i, (_, n, obs, gt) in enumerate(objects(data, 0, 1)):
                fd = m.field(obs)
                mesh, (decoded, coarse), measured = m.mesh_and_sigmas(fd, m.level_for(n))
                k = ~measured
                err, _ = cKDTree(sample_surface(gt, 20000, 0)).query(mesh.vertices[k])
                for key, x in (("sigma_decoded", decoded[k]), ("sigma_coarse", coarse[k]), ("views", np.full(len(err), n)),
                               ("hit", err <= TOL_M), ("object", np.full(len(err), i)),
                               ("visible", np.full(len(err), fd["visible_fraction"]))):
                    cols[key].append(x)
            np.savez(f"{out}/{name}_{set_name}.npz", **{k: np.concatenate(v) for k, v in cols.items()})
            print(name, set_name, "done", flush=True)


def per_object_auroc(c: np.ndarray, d: dict, k: np.ndarray) -> float:
    """The mean over objects of each one's AUROC (as bench reports it), objects with hits and misses."""
    vals = [auroc(c[j], d["hit"][j]) for j in (k & (d["object"] == o) for o in np.unique(d["object"][k]))
            if 0 < d["hit"][j].sum() < j.sum()]
    return float(np.mean(vals))


def decoder_fit(out: str, calib: str, heldout: str) -> None:
    """Each slope, and both in quadrature, fitted on the calibration set as calibrate fits them
    (scale, floor, occlusion gain), judged on both sets."""
    for name in FILES:
        cal, ho = (dict(np.load(f"{out}/{name}_{s}.npz")) for s in (calib, heldout))
        for label, spread in (("samples' mean slope", lambda d: d["sigma_coarse"]),
                              ("decoded slope", lambda d: d["sigma_decoded"]),
                              ("both in quadrature (shipped)", lambda d: np.hypot(d["sigma_coarse"], d["sigma_decoded"]))):
            fc = fit_confidence(spread(cal), cal["hit"], cal["visible"])
            print(f"{name}, {label}: scale {fc['sigma_scale']} floor {fc['sigma_floor_m']} gain {fc['occlusion_gain_m']} "
                  f"brier {fc['brier']:.4f}")
            for set_name, d in ((calib, cal), (heldout, ho)):
                c = confidence_from_sigma(spread(d), fc["sigma_scale"], fc["sigma_floor_m"], TOL_M, fc["occlusion_gain_m"],
                                          d["visible"])
                cells = [f"ECE {expected_calibration_error(c[k], d['hit'][k]):.3f} "
                         f"conf - hit {c[k].mean() - d['hit'][k].mean():+.3f} AUROC per object {per_object_auroc(c, d, k):.3f}"
                         for k in (d["views"] == n for n in (1, 2, 4))]
                print(f"  {set_name}: pooled ECE {expected_calibration_error(c, d['hit']):.3f}; at 1 / 2 / 4 views: "
                      + " | ".join(cells))


def families(out: str, set_name: str, data: str) -> None:
    import json

    from amodalgen3d_ros.model import weights_meta

    fams = [json.loads((sc / "gt" / "gt.json").read_text())["family"] for sc in synth.scene_dirs(data)]
    for name, w in FILES.items():
        fit = weights_meta(w)["confidence"]
        d = dict(np.load(f"{out}/{name}_{set_name}.npz"))
        # sets collected before the occlusion term have no visible share: read without that term
        gain = fit.get("occlusion_gain_m", 0.0) if "visible" in d else 0.0
        c = confidence_from_sigma(d["sigma"], fit["sigma_scale"], fit["sigma_floor_m"], TOL_M, gain, d.get("visible", 1.0))
        fam = np.array([fams[int(i) // 3] for i in d["object"]])  # objects(): 3 per scene, at 1, 2, 4 views
        print(f"{name} on {set_name} (scale {fit['sigma_scale']}, floor {fit['sigma_floor_m']}, occlusion gain {gain}): "
              f"confidence {c.mean():.3f}, within 5 mm {d['hit'].mean():.3f}")
        for f in sorted(set(fams)):
            k = fam == f
            print(f"  {f:12s} scenes {fams.count(f):3d} vertices {k.sum():7d} confidence {c[k].mean():.3f} "
                  f"within 5 mm {d['hit'][k].mean():.3f}")


if __name__ == "__main__":
    if sys.argv[1] == "collect":
        collect(sys.argv[2], dict(a.split("=", 1) for a in sys.argv[3:]))
    elif sys.argv[1] == "decoder-collect":
        decoder_collect(sys.argv[2], dict(a.split("=", 1) for a in sys.argv[3:]))
    elif sys.argv[1] == "decoder-fit":
        decoder_fit(*sys.argv[2:5])
    elif sys.argv[1] == "families":
        families(sys.argv[2], *sys.argv[3].split("=", 1))
    else:
        fit(*sys.argv[2:5])
