"""Training of the local decoder (local_decoder.py): its data are the generator's own fields on
fresh train-split scenes (not the ones it was trained on), with the true ramp at the query voxels.

    amodalgen3d synth --out data/decoder_train --scenes 2700 --seed 5 --split train
    amodalgen3d train --mode decoder --data data/decoder_train   # 2700 scenes, 15000 steps: the shipped recipe
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..geometry import transform
from ..learned import DEFAULT_WEIGHTS, learned_method
from ..local_decoder import DecoderConfig, LocalDecoder, fine_channels, local_features, query_voxels, ramp_target, save_decoder
from ..observation import observe
from ..views import read_views_dir
from ..weights_io import file_sha256
from .metrics import distance_to_mesh, inside
from .synth import load_gt
from .train import LoopConfig, augment_views, fit, make_shards


@dataclass(frozen=True)
class DecoderTrainConfig(LoopConfig):
    data: str = "data/decoder_train"  # train split, a seed the generator was not trained on
    out: str = "runs/decoder"
    generator: str = str(DEFAULT_WEIGHTS["amodalgen3d"])
    scenes: int = 2700  # the shipped decoder's (1800 scenes, 10000 steps: validation BCE 0.403 against 0.373)
    samples_per_scene: int = 2
    points_per_sample: int = 2000
    shard_size: int = 50
    width: int = DecoderConfig.width  # the MLP's
    # the loop's: a batch is 4096 points
    steps: int = 15000
    batch: int = 4096
    lr: float = 1e-3
    val_every: int = 500
    ckpt_every: int = 250


def field_source(generator: str | Path):
    """The generator whose fields the decoder learns from: without a decoder of its own (the
    shipped one is calibrated with the shipped generator and would otherwise run by default, so a
    re-run of the training would learn from decoded fields)."""
    return learned_method("amodalgen3d", generator, threads=1, decoder=0)


def decoder_scene_samples(scene: Path, cfg: DecoderTrainConfig) -> list[dict]:
    """Per sample (1-4 random views of the scene, augmented as the generator's data): the local
    features and true ramp of up to points_per_sample query voxels, half of them within two
    voxels of the true surface."""
    rng = np.random.default_rng([cfg.seed, int(scene.name.split("_")[-1])])
    vs = read_views_dir(scene / "views")
    gt = load_gt(scene)
    gen = field_source(cfg.generator)
    dcfg = DecoderConfig(fine_res=gen.fine_res)
    out = []
    for _ in range(cfg.samples_per_scene):
        n = int(rng.integers(1, min(4, len(vs.views)) + 1))
        idx = sorted(rng.choice(len(vs.views), n, replace=False).tolist())
        views = augment_views([vs.views[i] for i in idx], rng)
        if not (views[0].labels == vs.target_id).any():
            continue
        try:
            fd = gen.field(observe(views, vs.target_id))
        except ValueError:
            continue
        band = fd["band"]
        ijk = query_voxels(fd["field"], band, dcfg)
        if not len(ijk):
            continue
        grid = fd["grid"]
        pts = transform(fd["mi"].T_out_cube, grid.origin + (ijk + 0.5) * grid.voxel_m)
        sd = distance_to_mesh(gt["mesh"], pts) * np.where(inside(gt["mesh"], pts), -1.0, 1.0)
        near = np.flatnonzero(np.abs(sd) < 2 * grid.voxel_m)
        far = np.flatnonzero(np.abs(sd) >= 2 * grid.voxel_m)
        k = cfg.points_per_sample // 2
        pick = np.concatenate([rng.choice(near, min(k, len(near)), replace=False),
                               rng.choice(far, min(cfg.points_per_sample - min(k, len(near)), len(far)), replace=False)])
        x = local_features(fine_channels(fd["field"], fd["hull"], fd["evidence"]), ijk[pick], dcfg)
        out.append({"x": x.astype(np.float16), "y": ramp_target(sd[pick], grid.voxel_m).astype(np.float16),
                    "n_views": np.full(len(pick), n, np.int8)})
    return out


def _decoder_job(args) -> int:
    shard_path, scenes, cfg = args
    if Path(shard_path).exists():
        return 0
    torch.set_num_threads(1)
    samples = [s for sc in scenes for s in decoder_scene_samples(Path(sc), cfg)]
    arrays = {k: np.concatenate([s[k] for s in samples]) for k in ("x", "y", "n_views")}
    tmp = str(shard_path) + ".tmp.npz"
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    Path(tmp).rename(shard_path)
    return len(samples)


def shard_dir(cfg: DecoderTrainConfig) -> Path:
    """Where the shards of this data live: named by everything that decides what a scene's shard
    holds (the generator, the seed, the samples per scene and the points per sample), so a run
    that asks for other samples never trains on shards made for another."""
    return Path(cfg.data) / (f"decoder_{file_sha256(cfg.generator)[:12]}_s{cfg.seed}_n{cfg.samples_per_scene}"
                             f"_p{cfg.points_per_sample}")


def prepare_decoder(cfg: DecoderTrainConfig, progress: bool = True) -> dict[str, np.ndarray]:
    """Shards under shard_dir(cfg), made once, in parallel, resumably."""
    dirs = [Path(cfg.data) / f"scene_{i:05d}" for i in range(cfg.scenes)]
    dirs = [d for d in dirs if (d / "done").exists()]
    if not dirs:
        raise FileNotFoundError(f"no scenes in {cfg.data}: run `amodalgen3d synth --out {cfg.data} ...` first")
    root = shard_dir(cfg)
    root.mkdir(parents=True, exist_ok=True)
    jobs = [(root / f"shard_{j // cfg.shard_size:04d}_{len(dirs[j:j + cfg.shard_size])}.npz",
             [str(d) for d in dirs[j:j + cfg.shard_size]], cfg) for j in range(0, len(dirs), cfg.shard_size)]
    make_shards(_decoder_job, jobs, "prepare decoder", progress)
    # filled shard by shard into arrays of the final size: the features are ~1.3 kB a point (GBs),
    # so never twice in memory
    sizes = [len(np.load(j[0])["y"]) for j in jobs]
    out: dict[str, np.ndarray] = {}
    at = 0
    for j, n in zip(jobs, sizes):
        with np.load(j[0]) as part:
            for key in part.files:
                a = part[key]
                if key not in out:
                    out[key] = np.empty((sum(sizes), *a.shape[1:]), a.dtype)
                out[key][at:at + n] = a
        at += n
    return out


def decoder_loss(net: LocalDecoder, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(net(x), y)


def train_decoder(cfg: DecoderTrainConfig, progress: bool = True) -> Path:
    """Data, network, the shared loop (train.fit), weights: as train() and train_prior()."""
    torch.set_num_threads(cfg.threads)
    data = prepare_decoder(cfg, progress)
    # the last shard's points validate: points of one object are not independent of each other
    n = len(data["y"])
    n_val = max(1, min(20000, n // 10))
    val = slice(n - n_val, n)
    train_n = n - n_val
    torch.manual_seed(cfg.seed)
    net = LocalDecoder(DecoderConfig(width=cfg.width))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps({"train": asdict(cfg), "decoder": asdict(net.cfg), "points": n}, indent=1))

    def batch(sl) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.from_numpy(data["x"][sl].astype(np.float32)), torch.from_numpy(data["y"][sl].astype(np.float32)))

    def validate() -> float:
        xv, yv = batch(val)
        return float(decoder_loss(net, xv, yv).item())

    step, t_spent = fit(net, cfg, out, loss_on=lambda b: decoder_loss(net, *b),  # type: ignore[arg-type]
                        draw=lambda rng: batch(np.sort(rng.choice(train_n, cfg.batch, replace=False))),
                        validate=validate, desc="train decoder", progress=progress)
    weights = out / "local_decoder.safetensors"
    save_decoder(net, weights, {"steps": step, "train_seconds": round(t_spent), "points": n, "seed": cfg.seed,
                                "data": cfg.data, "scenes": cfg.scenes, "generator_sha256": file_sha256(cfg.generator)})
    return weights


def smoke_decoder_config(data: str, out: str) -> DecoderTrainConfig:
    """A seconds-long run for CI."""
    return replace(DecoderTrainConfig(), data=data, out=out, scenes=2, samples_per_scene=1, points_per_sample=200,
                   shard_size=1, steps=3, batch=64, val_every=3, ckpt_every=3)
