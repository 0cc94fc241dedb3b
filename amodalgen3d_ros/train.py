"""Training, read top to bottom: config, data (prepared once from synth scenes), model, optimizer,
one loop with validation, checkpoints and a loss log; export of safetensors weights.

    amodalgen3d train --data data/train --mode flow --steps 3000 --out runs/flow
    amodalgen3d train --data data/train --mode regress --steps 3000 --out runs/regress

Resumable: preparation writes shards and skips the ones present; the loop resumes from
runs/NAME/ckpt.pt. Fixed seed: the same command gives the same weights for the same steps.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .features import FEATURES_VERSION, FeatureConfig, model_inputs
from .geometry import transform
from .metrics import inside
from .model import AmodalGen3D, ModelConfig, flow_matching_loss, regression_loss, save_weights
from .observation import observe
from .synth import load_gt
from .views import View, read_views_dir

CKPT_FORMAT = 1


@dataclass(frozen=True)
class TrainConfig:
    data: str = "data/train"
    out: str = "runs/flow"
    mode: str = "flow"  # "flow" (generator) or "regress" (deterministic reference)
    scenes: int = 3000
    samples_per_scene: int = 2  # different view subsets of one scene
    steps: int = 3000
    batch: int = 16
    lr: float = 3e-4
    warmup: int = 100
    weight_decay: float = 0.01
    seed: int = 0
    threads: int = 2
    val_every: int = 250
    ckpt_every: int = 50
    shard_size: int = 200
    # ablations (paper's manner)
    view_fusion: str = "visibility"
    use_vwca: bool = True
    use_scca: bool = True
    use_gate: bool = True


# --------------------------------------------------------------------------------------------
# Data: scenes -> prepared samples (ModelInputs + ground-truth occupancy in the cube)
# --------------------------------------------------------------------------------------------

def augment_views(views: list[View], rng: np.random.Generator) -> list[View]:
    """Robustness: small pose errors, eroded/dilated masks, extra depth holes."""
    import cv2

    out = []
    for k, v in enumerate(views):
        T = v.T_world_cam.copy() if v.T_world_cam is not None else None
        if T is not None and k > 0 and rng.random() < 0.5:
            from scipy.spatial.transform import Rotation

            dR = Rotation.from_rotvec(rng.normal(0, np.radians(0.7), 3)).as_matrix()
            T[:3, :3] = dR @ T[:3, :3]
            T[:3, 3] += rng.normal(0, 0.003, 3)
        labels = v.labels.copy()
        if rng.random() < 0.3:  # the detector's mask is a little off
            ids = [i for i in np.unique(labels) if i]
            if ids:
                i = ids[int(rng.integers(len(ids)))]
                m = (labels == i).astype(np.uint8)
                op = cv2.erode if rng.random() < 0.5 else cv2.dilate
                m2 = op(m, np.ones((3, 3), np.uint8)) > 0
                labels[(labels == i) & ~m2] = 0
                labels[m2 & (labels == 0)] = i
        depth = v.depth_m.copy() if v.depth_m is not None else None
        if depth is not None and rng.random() < 0.3:
            holes = rng.random(depth.shape) < 0.05
            depth[holes] = 0
        out.append(View(v.color, depth, v.K, labels, T, v.stamp_s, v.name))
    return out


def prepare_scene(scene: Path, n_samples: int, fcfg: FeatureConfig, seed: int) -> list[dict]:
    rng = np.random.default_rng([seed, int(scene.name.split("_")[-1])])
    vs = read_views_dir(scene / "views")
    gt = load_gt(scene)
    out = []
    for _ in range(n_samples):
        n = int(rng.integers(1, min(fcfg.max_views, len(vs.views)) + 1))
        idx = sorted(rng.choice(len(vs.views), n, replace=False).tolist())
        views = augment_views([vs.views[i] for i in idx], rng)
        if not (views[0].labels == vs.target_id).any():
            continue
        try:
            obs = observe(views, vs.target_id)
            mi = model_inputs(obs, fcfg, jitter_yaw_rad=float(rng.normal(0, 0.1)))
        except ValueError:  # no valid target pixels after augmentation
            continue
        centers = transform(mi.T_out_cube, mi.grid(fcfg.res).centers())
        occ = inside(gt["mesh"], centers).reshape((fcfg.res,) * 3)
        out.append({"geo": mi.geo.astype(np.float16), "views": mi.views.astype(np.float16), "tau": mi.tau,
                    "valid": mi.view_valid, "occ": np.packbits(occ), "family": gt["family"]})
    return out


def _prepare_job(args) -> int:
    shard_path, scenes, n, fcfg, seed = args
    if Path(shard_path).exists():
        return 0
    samples = [s for sc in scenes for s in prepare_scene(Path(sc), n, fcfg, seed)]
    arrays = {k: np.stack([s[k] for s in samples]) for k in ("geo", "views", "tau", "valid", "occ")}
    tmp = str(shard_path) + ".tmp.npz"
    np.savez(tmp, family=np.array([s["family"] for s in samples]), **arrays)  # type: ignore[arg-type]
    Path(tmp).rename(shard_path)
    return len(samples)


def prepare(cfg: TrainConfig, fcfg: FeatureConfig, progress: bool = True) -> list[Path]:
    """Prepared shards under DATA/prepared_<seed>/, made once, in parallel, resumably."""
    from multiprocessing import get_context

    from tqdm import tqdm

    # shards cover fixed index ranges, so a shard's content never depends on what else was done
    scenes = [Path(cfg.data) / f"scene_{i:05d}" for i in range(cfg.scenes)]
    scenes = [s for s in scenes if (s / "done").exists()]
    if not scenes:
        raise FileNotFoundError(f"no scenes in {cfg.data}: run `amodalgen3d synth --out {cfg.data} ...` first")
    root = Path(cfg.data) / f"prepared_v{FEATURES_VERSION}_s{cfg.seed}_n{cfg.samples_per_scene}"
    root.mkdir(parents=True, exist_ok=True)
    jobs = []
    for k in range(0, cfg.scenes, cfg.shard_size):
        part = [str(s) for s in scenes if k <= int(s.name[-5:]) < k + cfg.shard_size]
        if len(part) == min(cfg.shard_size, cfg.scenes - k):  # only complete index ranges
            jobs.append((root / f"shard_{k // cfg.shard_size:04d}.npz", part, cfg.samples_per_scene, fcfg, cfg.seed))
    todo = [j for j in jobs if not j[0].exists()]
    if todo:
        with get_context("spawn").Pool(min(2, len(todo))) as pool, \
                tqdm(total=len(todo), desc="prepare", unit="shard", disable=not progress) as bar:
            for _ in pool.imap_unordered(_prepare_job, todo):
                bar.update()
    return [j[0] for j in jobs]


class Samples:
    """All prepared samples in memory (a few GB at most)."""

    def __init__(self, shards: list[Path]):
        parts = [np.load(s) for s in shards]
        self.geo = np.concatenate([p["geo"] for p in parts])
        self.views = np.concatenate([p["views"] for p in parts])
        self.tau = np.concatenate([p["tau"] for p in parts])
        self.valid = np.concatenate([p["valid"] for p in parts])
        self.occ = np.concatenate([p["occ"] for p in parts])
        self.res = round(self.geo.shape[-1])

    def __len__(self) -> int:
        return len(self.geo)

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, ...]:
        R = self.res
        occ = np.unpackbits(self.occ[idx], axis=1)[:, : R ** 3].reshape(len(idx), 1, R, R, R)
        return (torch.from_numpy(occ.astype(np.float32)), torch.from_numpy(self.geo[idx].astype(np.float32)),
                torch.from_numpy(self.views[idx].astype(np.float32)), torch.from_numpy(self.tau[idx]),
                torch.from_numpy(self.valid[idx]))


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------

def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(p, 1.0))))


def train(cfg: TrainConfig, progress: bool = True) -> Path:
    from tqdm import tqdm

    torch.set_num_threads(cfg.threads)
    fcfg = FeatureConfig()
    data = Samples(prepare(cfg, fcfg, progress))
    rng = np.random.default_rng(cfg.seed)
    perm = rng.permutation(len(data))
    n_val = max(1, min(64, len(data) // 10))
    val_idx, train_idx = perm[:n_val], perm[n_val:]

    mcfg = ModelConfig(mode=cfg.mode, view_fusion=cfg.view_fusion, use_vwca=cfg.use_vwca,
                       use_scca=cfg.use_scca, use_gate=cfg.use_gate, crop=fcfg.crop, max_views=fcfg.max_views,
                       res=fcfg.res)
    torch.manual_seed(cfg.seed)
    model = AmodalGen3D(mcfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    loss_fn = flow_matching_loss if cfg.mode == "flow" else regression_loss

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "ckpt.pt"
    step, t_spent = 0, 0.0
    if ckpt_path.exists():  # resume: checkpoints are plain dicts, loaded without pickle
        ck = torch.load(ckpt_path, weights_only=True)
        assert ck["format"] == CKPT_FORMAT
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        step, t_spent = int(ck["step"]), float(ck["seconds"])
        torch.set_rng_state(ck["torch_rng"])
        rng = np.random.default_rng([cfg.seed, step])
    (out / "config.json").write_text(json.dumps({"train": asdict(cfg), "model": asdict(mcfg), "features": asdict(fcfg),
                                                 "samples": len(data)}, indent=1))
    log = (out / "log.jsonl").open("a")

    def validate() -> float:
        model.eval()
        g = torch.get_rng_state()
        torch.manual_seed(1234)  # the same noise every time: comparable numbers
        with torch.no_grad():
            losses = [loss_fn(model, *data.batch(val_idx[i:i + 16])).item() for i in range(0, len(val_idx), 16)]
        torch.set_rng_state(g)
        model.train()
        return float(np.mean(losses))

    model.train()
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.mode}", disable=not progress)
    while step < cfg.steps:
        t0 = time.time()
        for gr in opt.param_groups:
            gr["lr"] = lr_at(step, cfg)
        batch = data.batch(rng.choice(train_idx, cfg.batch, replace=False))
        loss = loss_fn(model, *batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        t_spent += time.time() - t0
        rec = {"step": step, "loss": round(loss.item(), 5), "grad_norm": round(float(gnorm), 4),
               "lr": lr_at(step - 1, cfg), "seconds": round(t_spent, 1)}
        if step % cfg.val_every == 0 or step == cfg.steps:
            rec["val_loss"] = round(validate(), 5)
        log.write(json.dumps(rec) + "\n")
        log.flush()
        bar.set_postfix(loss=f"{loss.item():.4f}")
        bar.update()
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            tmp = out / "ckpt.pt.tmp"
            torch.save({"format": CKPT_FORMAT, "model": model.state_dict(), "optimizer": opt.state_dict(),
                        "step": step, "seconds": t_spent, "torch_rng": torch.get_rng_state(),
                        "config": asdict(cfg)}, tmp)
            tmp.replace(ckpt_path)
    bar.close()
    weights = out / f"{cfg.mode}.safetensors"
    save_weights(model, weights, {"steps": step, "train_seconds": round(t_spent), "samples": len(data),
                                  "seed": cfg.seed, "data": cfg.data, "scenes": cfg.scenes})
    return weights


def smoke_config(data: str, out: str) -> TrainConfig:
    """A seconds-long run for CI: a few steps on a handful of scenes."""
    return replace(TrainConfig(), data=data, out=out, scenes=4, samples_per_scene=1, steps=3, batch=2,
                   val_every=3, ckpt_every=3, shard_size=2)
