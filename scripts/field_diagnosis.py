"""Where a learned method's field goes wrong on one benchmark scene: the generator and the
reference side by side, read against the truth.

    .venv/bin/python scripts/field_diagnosis.py data/heldout120/scene_00037 4

Per method: the surface level; how much of the object's cavities (inside the truth's convex hull,
outside the truth) lies above the level, after the local decoder and on the coarse field (a
filled mug or bowl shows here); the network's mean occupancy inside the truth in slabs by depth
behind the object's centre, seen from the first camera (a far side cut short shows here), with the
samples' spread per coarse voxel (0 for the reference: one answer); and the mesh's completeness
and accuracy over the whole surface (metrics.evaluate, as the benchmark reads them).
"""
import sys
from pathlib import Path

import numpy as np

from amodalgen3d_ros import synth
from amodalgen3d_ros.geometry import invert, transform
from amodalgen3d_ros.metrics import evaluate, inside
from amodalgen3d_ros.model import learned_method
from amodalgen3d_ros.observation import observe
from amodalgen3d_ros.views import read_views_dir

SLABS_M = [(-0.2, 0.0), (0.0, 0.03), (0.03, 0.06), (0.06, 0.2)]


def main(scene: Path, n: int) -> None:
    vs, gt = read_views_dir(scene / "views"), synth.load_gt(scene)
    obs = observe(vs.views[:n], vs.target_id, seed=0)
    T_ref_world = invert(np.asarray(gt["T_world_camera"][0]).reshape(4, 4))
    T_out_to_cam = T_ref_world if obs.frame == "world" else np.eye(4)
    truth = gt["mesh"].copy().apply_transform(np.eye(4) if obs.frame == "world" else T_ref_world)
    hull = truth.convex_hull
    centre_z = transform(T_out_to_cam, truth.centroid[None])[0, 2]
    print(f"{scene.name} ({gt['family']}), {n} view(s), {len(obs.used_views())} used")
    for name in ("amodalgen3d", "amodal_regressor"):
        method = learned_method(name, None, decoder=1)
        fd = method.field(obs)
        mi, level = fd["mi"], method.level_for(fd["n_views"])
        fine = transform(mi.T_out_cube, fd["grid"].centers())
        cavity = inside(hull, fine) & ~inside(truth, fine)
        decoded = fd["field"].reshape(-1)
        coarse = fd.get("coarse_field", fd["field"]).reshape(-1)
        print(f"{name}: level {level:.2f}; cavity above it {np.mean(decoded[cavity] > level):.2f} decoded, "
              f"{np.mean(coarse[cavity] > level):.2f} coarse ({cavity.sum()} fine voxels)")
        prob, each = method.occupancy_samples(mi)
        centres = transform(mi.T_out_cube, mi.grid(prob.shape[0]).centers())
        solid = inside(truth, centres)
        depth = transform(T_out_to_cam, centres)[:, 2] - centre_z
        each = each.reshape(len(each), -1)
        for lo, hi in SLABS_M:
            s = solid & (depth >= lo) & (depth < hi)
            if s.any():
                print(f"  inside the truth {lo * 100:+.0f}..{hi * 100:+.0f} cm behind its centre ({s.sum()} voxels): "
                      f"occupancy {prob.reshape(-1)[s].mean():.2f}, samples' spread {each[:, s].std(0).mean():.2f}")
        m = evaluate(method.mesh(fd, level)[0], truth)  # the mesh the method publishes, from this field
        print(f"  mesh: completeness {m['completeness_mm']:.2f} mm, accuracy {m['accuracy_mm']:.2f} mm over the whole surface")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 4)
