"""Training, read top to bottom: config, data (prepared once from synth scenes), model, optimizer,
one loop with validation, checkpoints and a loss log; export of safetensors weights.

    amodalgen3d train --data data/train --mode flow --steps 3000 --out runs/flow
    amodalgen3d train --data data/train --mode regress --steps 3000 --out runs/regress

Resumable: preparation writes shards and skips the ones present; the loop resumes from
runs/NAME/ckpt.pt. Fixed seed: the same command gives the same weights for the same steps, on
the same thread count, also when the run was interrupted and resumed (the checkpoint keeps the
data order's generator state as well as torch's).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from ..amodal_prior import (
    DEPTH_CLIP,
    PRIOR_INPUT_VERSION,
    PRIOR_WEIGHTS,
    AmodalPrior,
    PriorConfig,
    load_prior,
    prior_input,
    prior_loss,
    save_prior,
    torch_runner,
)
from ..features import FEATURES_VERSION, FeatureConfig, model_inputs
from ..geometry import transform
from ..model import AmodalGen3D, ModelConfig, flow_matching_loss, load_weights, regression_loss, save_weights
from ..observation import observe
from ..views import View, read_views_dir
from ..weights_io import file_sha256, weights_meta
from .metrics import inside
from .synth import load_gt

CKPT_FORMAT = 1


@dataclass(frozen=True)
class LoopConfig:
    """The optimisation loop's settings, shared by every network trained here."""

    steps: int = 3000
    batch: int = 16
    lr: float = 3e-4
    warmup: int = 100
    weight_decay: float = 0.01
    seed: int = 0
    threads: int = 2
    val_every: int = 250
    ckpt_every: int = 50


@dataclass(frozen=True)
class TrainConfig(LoopConfig):
    data: str = "data/train"
    out: str = "runs/flow"
    mode: str = "flow"  # "flow" (generator) or "regress" (deterministic reference)
    predict: str = "x0"  # flow mode: the network predicts the clean shape (x0, shipped) or the velocity
    scenes: int = 3000
    samples_per_scene: int = 2  # different view subsets of one scene
    shard_size: int = 200
    # ablations (paper's manner)
    view_fusion: str = "visibility"
    use_vwca: bool = True
    use_scca: bool = True
    use_gate: bool = True
    # the 2D amodal prior's weights: its outputs are the generator's inputs ("" = ablation without it)
    prior: str = str(PRIOR_WEIGHTS)
    # start from these weights instead of the initialisation (same network, any mode): the
    # generator warm-started from the trained reference, whose one-step answer is what the
    # generator's first step (t = 1) must give anyway
    init: str = ""


# --------------------------------------------------------------------------------------------
# Data: scenes -> prepared samples (ModelInputs + ground-truth occupancy in the cube)
# --------------------------------------------------------------------------------------------

def augment_views(views: list[View], rng: np.random.Generator) -> list[View]:
    """Robustness: small pose errors, eroded/dilated masks, extra depth holes."""
    out = []
    for k, v in enumerate(views):
        T = v.T_world_cam.copy() if v.T_world_cam is not None else None
        if T is not None and k > 0 and rng.random() < 0.5:
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


_PRIOR_RUNNERS: dict = {}


def _prior_runner(path: str):
    """The prior network, loaded once per process (preparation runs in worker processes)."""
    if not path:
        return None
    if path not in _PRIOR_RUNNERS:
        torch.set_num_threads(1)
        _PRIOR_RUNNERS[path] = torch_runner(load_prior(path))
    return _PRIOR_RUNNERS[path]


def prepare_scene(scene: Path, n_samples: int, fcfg: FeatureConfig, seed: int, prior: str = "") -> list[dict]:
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
            mi = model_inputs(obs, fcfg, jitter_yaw_rad=float(rng.normal(0, 0.1)), prior=_prior_runner(prior))
        except ValueError:  # no valid target pixels after augmentation
            continue
        centers = transform(mi.T_out_cube, mi.grid(fcfg.res).centers())
        occ = inside(gt["mesh"], centers).reshape((fcfg.res,) * 3)
        out.append({"geo": mi.geo.astype(np.float16), "views": mi.views.astype(np.float16), "tau": mi.tau,
                    "valid": mi.view_valid, "occ": np.packbits(occ), "family": gt["family"]})
    return out


def _prepare_job(args) -> int:
    shard_path, scenes, n, fcfg, seed, prior = args
    if Path(shard_path).exists():
        return 0
    samples = [s for sc in scenes for s in prepare_scene(Path(sc), n, fcfg, seed, prior)]
    arrays = {k: np.stack([s[k] for s in samples]) for k in ("geo", "views", "tau", "valid", "occ")}
    tmp = str(shard_path) + ".tmp.npz"
    np.savez(tmp, family=np.array([s["family"] for s in samples]), **arrays)  # type: ignore[arg-type]
    Path(tmp).rename(shard_path)
    return len(samples)


def prepare(cfg: TrainConfig, fcfg: FeatureConfig, progress: bool = True) -> list[Path]:
    """Prepared shards under DATA/prepared_<seed>/, made once, in parallel, resumably."""


    # shards cover fixed index ranges, so a shard's content never depends on what else was done
    scenes = [Path(cfg.data) / f"scene_{i:05d}" for i in range(cfg.scenes)]
    scenes = [s for s in scenes if (s / "done").exists()]
    if not scenes:
        raise FileNotFoundError(f"no scenes in {cfg.data}: run `amodalgen3d synth --out {cfg.data} ...` first")
    # keyed by the features' version and the prior's weights: its outputs are in the samples
    tag = f"p{file_sha256(cfg.prior)[:8]}" if cfg.prior else ""
    root = Path(cfg.data) / f"prepared_v{FEATURES_VERSION}{tag}_s{cfg.seed}_n{cfg.samples_per_scene}"
    root.mkdir(parents=True, exist_ok=True)
    jobs = []
    for k in range(0, cfg.scenes, cfg.shard_size):
        part = [str(s) for s in scenes if k <= int(s.name[-5:]) < k + cfg.shard_size]
        if len(part) == min(cfg.shard_size, cfg.scenes - k):  # only complete index ranges
            jobs.append((root / f"shard_{k // cfg.shard_size:04d}.npz", part, cfg.samples_per_scene, fcfg, cfg.seed,
                         cfg.prior))
    make_shards(_prepare_job, jobs, "prepare", progress)
    return [j[0] for j in jobs]


def make_shards(job, jobs: list[tuple], desc: str, progress: bool) -> None:
    """Run job(args) for the jobs whose shard (args[0]) is missing, on two processes."""
    todo = [j for j in jobs if not j[0].exists()]
    if todo:
        with get_context("spawn").Pool(min(2, len(todo))) as pool, \
                tqdm(total=len(todo), desc=desc, unit="shard", disable=not progress) as bar:
            for _ in pool.imap_unordered(job, todo):
                bar.update()


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

def lr_at(step: int, cfg: LoopConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(p, 1.0))))


def fit(model: torch.nn.Module, cfg: LoopConfig, out: Path, loss_on, draw, validate, desc: str,
        progress: bool = True) -> tuple[int, float]:
    """The one optimisation loop: AdamW, warm-up and cosine learning rate, gradient clipping,
    validation every cfg.val_every steps, a checkpoint every cfg.ckpt_every (resumed from if
    present: plain dicts, loaded without pickle), one JSON line of log per step.
    draw(rng) -> batch; loss_on(batch) -> scalar loss; validate() -> float. Returns (steps, seconds)."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    rng = np.random.default_rng(cfg.seed)
    ckpt_path = out / "ckpt.pt"
    step, t_spent = 0, 0.0
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=True)
        assert ck["format"] == CKPT_FORMAT
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        step, t_spent = int(ck["step"]), float(ck["seconds"])
        torch.set_rng_state(ck["torch_rng"])
        if "data_rng" in ck:  # the data order goes on where it stopped: resumed == uninterrupted
            rng.bit_generator.state = json.loads(ck["data_rng"])
        else:  # checkpoints written before it was kept: a new order from here
            rng = np.random.default_rng([cfg.seed, step])
    log = (out / "log.jsonl").open("a")
    model.train()
    bar = tqdm(total=cfg.steps, initial=step, desc=desc, disable=not progress)
    while step < cfg.steps:
        t0 = time.time()
        for gr in opt.param_groups:
            gr["lr"] = lr_at(step, cfg)
        loss = loss_on(draw(rng))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        t_spent += time.time() - t0
        rec = {"step": step, "loss": round(loss.item(), 5), "grad_norm": round(float(gnorm), 4),
               "lr": lr_at(step - 1, cfg), "seconds": round(t_spent, 1)}
        if step % cfg.val_every == 0 or step == cfg.steps:
            model.eval()
            g = torch.get_rng_state()
            torch.manual_seed(1234)  # the same noise every time: comparable numbers
            with torch.no_grad():
                rec["val_loss"] = round(validate(), 5)
            torch.set_rng_state(g)
            model.train()
        log.write(json.dumps(rec) + "\n")
        log.flush()
        bar.set_postfix(loss=f"{loss.item():.4f}")
        bar.update()
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            tmp = out / "ckpt.pt.tmp"
            torch.save({"format": CKPT_FORMAT, "model": model.state_dict(), "optimizer": opt.state_dict(),
                        "step": step, "seconds": t_spent, "torch_rng": torch.get_rng_state(),
                        "data_rng": json.dumps(rng.bit_generator.state),
                        "config": asdict(cfg)}, tmp)
            tmp.replace(ckpt_path)
    bar.close()
    return step, t_spent


def train(cfg: TrainConfig, progress: bool = True) -> Path:
    """The generator (flow) or the deterministic reference (regress): data, model, the loop, weights."""
    torch.set_num_threads(cfg.threads)
    fcfg = FeatureConfig(amodal_prior=bool(cfg.prior))
    data = Samples(prepare(cfg, fcfg, progress))
    perm = np.random.default_rng(cfg.seed).permutation(len(data))
    n_val = max(1, min(64, len(data) // 10))
    val_idx, train_idx = perm[:n_val], perm[n_val:]

    mcfg = ModelConfig(mode=cfg.mode, predict=cfg.predict, view_fusion=cfg.view_fusion, use_vwca=cfg.use_vwca,
                       use_scca=cfg.use_scca, use_gate=cfg.use_gate, crop=fcfg.crop, max_views=fcfg.max_views,
                       res=fcfg.res, amodal_prior=fcfg.amodal_prior, img_channels=len(fcfg.img_channels))
    torch.manual_seed(cfg.seed)
    model = AmodalGen3D(mcfg)
    if cfg.init:
        init_weights(model, cfg.init, cfg.prior)
    loss_fn = flow_matching_loss if cfg.mode == "flow" else regression_loss

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps({"train": asdict(cfg), "model": asdict(mcfg), "features": asdict(fcfg),
                                                 "samples": len(data)}, indent=1))
    step, t_spent = fit(
        model, cfg, out, loss_on=lambda batch: loss_fn(model, *batch),
        draw=lambda rng: data.batch(rng.choice(train_idx, cfg.batch, replace=False)),
        validate=lambda: float(np.mean([loss_fn(model, *data.batch(val_idx[i:i + 16])).item()
                                        for i in range(0, len(val_idx), 16)])),
        desc=f"train {cfg.mode}", progress=progress)
    weights = out / f"{cfg.mode}.safetensors"
    meta = {"steps": step, "train_seconds": round(t_spent), "samples": len(data), "seed": cfg.seed, "data": cfg.data,
            "scenes": cfg.scenes}
    if cfg.prior:  # the generator is only right with the prior it was trained on
        meta["prior_sha256"] = file_sha256(cfg.prior)
    if cfg.init:
        meta["init"] = {"file": Path(cfg.init).name, "sha256": file_sha256(cfg.init)}
    save_weights(model, weights, meta)
    return weights


# what may differ between a network and the weights it starts from: the training objective
_INIT_MAY_DIFFER = {"mode", "predict", "cond_dropout"}


def init_weights(model: AmodalGen3D, path: str, prior: str) -> None:
    """Load another run's weights into ``model``: the same network, trained with any objective and
    the same 2D prior (its outputs are inputs). A clear error otherwise."""
    src = load_weights(path)
    a, b = asdict(model.cfg), asdict(src.cfg)
    differ = sorted(k for k in a if a[k] != b.get(k) and k not in _INIT_MAY_DIFFER)
    if differ:
        raise ValueError(f"--init {path}: a different network ({', '.join(differ)} differ)")
    want = file_sha256(prior) if prior else None
    if weights_meta(path).get("prior_sha256") != want:
        raise ValueError(f"--init {path}: trained with another 2D amodal prior than {prior or 'none'}")
    model.load_state_dict(src.state_dict())
    if src.cfg.mode == "regress" and model.cfg.mode == "flow":
        # The reference never saw a noisy shape or a time: it ran with z = 0, t = 0. Zero the noisy
        # shape's input weights and hold the time embedding at the reference's c(0), so the
        # generator starts as the reference exactly, at every t (its samples all its one answer),
        # and learns to use z_t and t from there (zero-initialised paths, as in ControlNet).
        with torch.no_grad():
            model.x_embed.weight[:, 0] = 0.0
            c0 = src.t_embed(torch.zeros(1))[0]
            last = model.t_embed.mlp[-1]
            assert isinstance(last, torch.nn.Linear)
            last.weight.zero_()
            last.bias.copy_(c0)


# --------------------------------------------------------------------------------------------
# The 2D amodal prior: crops of synth views with their ground-truth amodal masks and depths
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PriorTrainConfig(LoopConfig):
    data: str = "data/train"
    out: str = "runs/prior"
    scenes: int = 3000  # scenes 0..N-1 of the split; a few views of each
    views_per_scene: int = 3
    shard_size: int = 200
    steps: int = 4000  # 11 minutes on 2 threads
    batch: int = 32
    lr: float = 1e-3
    ckpt_every: int = 100


def prior_targets(scene: Path, i: int, pi) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground truth on a prior crop: amodal mask (C, C) uint8, relative depth (C, C) float32,
    depth valid (C, C) uint8."""
    n = pi.x.shape[-1]
    am_png = cv2.imread(str(scene / "gt" / f"amodal_{i:03d}.png"), cv2.IMREAD_GRAYSCALE)
    ad_png = cv2.imread(str(scene / "gt" / f"amodal_depth_{i:03d}.png"), cv2.IMREAD_UNCHANGED)
    if am_png is None or ad_png is None:
        raise FileNotFoundError(f"{scene}/gt: amodal mask or depth of view {i} missing")
    am = am_png > 127
    ad = ad_png.astype(np.float32) / 1000
    a, _ = pi.box.sample(am, n)
    d, _ = pi.box.sample(ad, n)
    ok = a & (d > 0)
    rel = np.where(ok, np.clip((d - pi.z_ref) / pi.crop_m, -DEPTH_CLIP, DEPTH_CLIP), 0.0)
    return a.astype(np.uint8), rel.astype(np.float32), ok.astype(np.uint8)


def prior_scene_samples(scene: Path, k: int, seed: int, augment: bool = True) -> list[dict]:
    """Up to k views of one scene as prior samples (all views when k <= 0)."""
    rng = np.random.default_rng([seed, int(scene.name.split("_")[-1]), 7])
    vs = read_views_dir(scene / "views")
    gt = json.loads((scene / "gt" / "gt.json").read_text())
    idx = list(range(len(vs.views))) if k <= 0 else sorted(rng.choice(len(vs.views), k, replace=False).tolist())
    views = [vs.views[i] for i in idx]
    if augment:
        views = augment_views(views, rng)
    out = []
    for i, v in zip(idx, views):
        pi = prior_input(v, v.target_masks(vs.target_id))
        if pi is None:
            continue
        a, rel, ok = prior_targets(scene, i, pi)
        out.append({"x": pi.x.astype(np.float16), "amodal": a, "depth_rel": rel.astype(np.float16), "ok": ok,
                    "occlusion": float(gt["occlusion"][i]), "z_ref": pi.z_ref, "crop_m": pi.crop_m})
    return out


def _prior_job(args) -> int:
    path, scenes, k, seed, augment = args
    if Path(path).exists():
        return 0
    samples = [s for sc in scenes for s in prior_scene_samples(Path(sc), k, seed, augment)]
    arrays = {key: np.stack([s[key] for s in samples]) for key in samples[0]}
    tmp = str(path) + ".tmp.npz"
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    Path(tmp).rename(path)
    return len(samples)


def prepare_prior(data: str, scenes: int, k: int, seed: int, shard_size: int = 200, augment: bool = True,
                  progress: bool = True) -> dict[str, np.ndarray]:
    """Prior samples of scenes 0..scenes-1, in shards under DATA/prior_k<K>_s<seed>/ (resumable)."""


    root = Path(data) / f"prior_v{PRIOR_INPUT_VERSION}_k{k}_s{seed}{'' if augment else '_clean'}"
    root.mkdir(parents=True, exist_ok=True)
    dirs = [Path(data) / f"scene_{i:05d}" for i in range(scenes)]
    dirs = [d for d in dirs if (d / "done").exists()]
    if not dirs:
        raise FileNotFoundError(f"no scenes in {data}: run `amodalgen3d synth --out {data} ...` first")
    jobs = [(root / f"shard_{j // shard_size:04d}_{len(dirs[j:j + shard_size])}.npz",
             [str(d) for d in dirs[j:j + shard_size]], k, seed, augment) for j in range(0, len(dirs), shard_size)]
    make_shards(_prior_job, jobs, "prepare prior", progress)
    parts = [np.load(j[0]) for j in jobs]
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0].files}


def _prior_batch(d: dict, idx: np.ndarray) -> tuple[torch.Tensor, ...]:
    return (torch.from_numpy(d["x"][idx].astype(np.float32)), torch.from_numpy(d["amodal"][idx].astype(np.float32)),
            torch.from_numpy(d["depth_rel"][idx].astype(np.float32)), torch.from_numpy(d["ok"][idx].astype(np.float32)))


def train_prior(cfg: PriorTrainConfig, progress: bool = True) -> Path:
    """The 2D amodal prior: data, network, the loop, weights (the same structure as train())."""
    torch.set_num_threads(cfg.threads)
    data = prepare_prior(cfg.data, cfg.scenes, cfg.views_per_scene, cfg.seed, cfg.shard_size, progress=progress)
    perm = np.random.default_rng(cfg.seed).permutation(len(data["x"]))
    n_val = max(1, min(256, len(perm) // 10))
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    torch.manual_seed(cfg.seed)
    net = AmodalPrior(PriorConfig())
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps({"train": asdict(cfg), "prior": asdict(net.cfg),
                                                 "samples": len(perm)}, indent=1))

    def draw(rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        batch = _prior_batch(data, rng.choice(train_idx, cfg.batch, replace=False))
        if rng.random() < 0.5:  # mirrored: objects and occluders come from either side
            batch = tuple(t.flip(-1) for t in batch)
        return batch

    step, t_spent = fit(
        net, cfg, out, loss_on=lambda batch: prior_loss(net, *batch), draw=draw,
        validate=lambda: float(np.mean([prior_loss(net, *_prior_batch(data, val_idx[i:i + 64])).item()
                                        for i in range(0, n_val, 64)])),
        desc="train prior", progress=progress)
    weights = out / "amodal_prior.safetensors"
    save_prior(net, weights, {"steps": step, "train_seconds": round(t_spent), "samples": len(perm), "seed": cfg.seed,
                              "data": cfg.data, "scenes": cfg.scenes})
    return weights


def smoke_config(data: str, out: str) -> TrainConfig:
    """A seconds-long run for CI: a few steps on a handful of scenes."""
    return replace(TrainConfig(), data=data, out=out, scenes=4, samples_per_scene=1, steps=3, batch=2,
                   val_every=3, ckpt_every=3, shard_size=2)
