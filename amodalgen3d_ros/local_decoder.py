"""The local decoder: the generator's coarse occupancy made fine where the surface is.

The 3D generator predicts occupancy on a 32^3 grid in the object cube, a voxel of 7-14 mm on a
10-30 cm object: it rounds a box's edges and loses 3-7 mm walls and floors (bowls, mug sides).
The local decoder is the issue's "coarse grid plus a local implicit decoder": at each voxel of the
fine grid (64^3) near the surface, a small MLP reads the upsampled coarse field and the fine
observation around it (the views' TSDF band, seen-empty space, the support-plane hull, what lies
behind the target or an occluder) at three scales, and predicts the fine field as a ramp whose 0.5
crossing is the surface: the signed distance to the true surface, in units of two fine voxels,
clipped to [0, 1]. Marching cubes then places the surface between voxel centres by the ramp.

    amodalgen3d synth --out data/decoder_train --scenes 2700 --seed 5 --split train
    amodalgen3d train --mode decoder --data data/decoder_train   # 2700 scenes, 15000 steps: the shipped recipe

Its training data are the shipped generator's own fields on fresh train-split scenes (not the
ones it was trained on), so it learns to correct what the generator really gets wrong.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .train import LoopConfig

DECODER_WEIGHTS = Path(__file__).parent / "weights" / "amodal_local_decoder.safetensors"
# the fine field's channels, in the order the decoder reads them
CHANNELS = ("field", "hull", "tsdf", "band", "free", "below_plane", "behind_target", "behind_occluder")
DECODE_CHUNK = 8192  # query voxels decoded at once (their features are 21 MB)
RAMP_VOXELS = 2.0  # the target ramp's width: 0 at one voxel outside the surface, 1 at one inside


@dataclass(frozen=True)
class DecoderConfig:
    fine_res: int = 64  # the grid it was trained on: voxel units are its units
    scales: tuple[int, ...] = (1, 2, 4)  # taps at offsets {-s, 0, s}^3 of the field smoothed over 2s - 1
    width: int = 128
    band: float = 0.02  # decoded where the coarse field is in (band, 1 - band), widened by `margin`
    margin: int = 2

    @property
    def inputs(self) -> int:
        return len(CHANNELS) * 27 * len(self.scales)


class LocalDecoder(nn.Module):
    def __init__(self, cfg: DecoderConfig = DecoderConfig()):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.mlp = nn.Sequential(nn.Linear(cfg.inputs, w), nn.GELU(), nn.Linear(w, w), nn.GELU(),
                                 nn.Linear(w, w // 2), nn.GELU(), nn.Linear(w // 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, inputs) local features -> (N,) logits of the ramp value."""
        return self.mlp(x)[:, 0]


# --------------------------------------------------------------------------------------------
# Features: the fine field and observation around each decoded voxel
# --------------------------------------------------------------------------------------------

def fine_channels(field: np.ndarray, hull: np.ndarray | None, ev) -> np.ndarray:
    """(len(CHANNELS), R, R, R) float32 from the coarse field brought to the fine grid (after the
    agreement with what was seen), the fine support hull and the fine ray evidence."""
    tsdf = np.nan_to_num(ev.tsdf, nan=0.0)
    band = ~np.isnan(ev.tsdf)
    chans = [field, hull if hull is not None else np.zeros_like(field), tsdf, band, ev.free > 0, ev.below_plane,
             ev.behind_target > 0, ev.behind_occluder > 0]
    return np.stack([np.asarray(c, np.float32) for c in chans])


def query_voxels(field: np.ndarray, band: np.ndarray, cfg: DecoderConfig) -> np.ndarray:
    """(N, 3) indices of the fine voxels the decoder decides: where the coarse field is not
    settled, widened by a margin; the measured band is left to the measurement."""
    from scipy import ndimage

    open_ = (field > cfg.band) & (field < 1 - cfg.band)
    open_ = ndimage.binary_dilation(open_, iterations=cfg.margin)
    return np.argwhere(open_ & ~band)


def feature_reader(chans: np.ndarray, ijk: np.ndarray, cfg: DecoderConfig):
    """A function of a slice of ijk giving those voxels' local features, (n, inputs) float32: per
    scale s, the channels smoothed over 2s - 1 voxels and read at the 27 offsets {-s, 0, s}^3
    around each voxel (edge values beyond the grid); ordered scale, channel, offset. The smoothed
    grids are made once; the features are read a slice at a time, so a caller never needs all of
    them at once (20 000-35 000 query voxels x 648 inputs are 50-90 MB)."""
    from scipy import ndimage

    C, R = chans.shape[0], chans.shape[1]
    pad = max(cfg.scales)
    # only the box the taps and the smoothing reach (at the grid's faces the same edge values)
    reach = pad + max(cfg.scales) - 1
    lo, hi = np.maximum(ijk.min(0) - reach, 0), np.minimum(ijk.max(0) + reach + 1, R)
    box = chans[:, lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    q = ijk - lo
    S = np.array(box.shape[1:]) + 2 * pad
    off = np.stack(np.meshgrid(*[np.arange(-1, 2)] * 3, indexing="ij"), -1).reshape(-1, 3)  # (27, 3)
    base = ((q[:, 0] + pad) * S[1] + (q[:, 1] + pad)) * S[2] + (q[:, 2] + pad)  # (N,)
    tables = []
    for s in cfg.scales:
        sm = box if s == 1 else ndimage.uniform_filter(box, size=(1, 2 * s - 1, 2 * s - 1, 2 * s - 1), mode="nearest")
        # channels last: one gather of C contiguous values per tap
        last = np.pad(np.moveaxis(sm, 0, -1), ((pad, pad),) * 3 + ((0, 0),), mode="edge").reshape(-1, C)
        d = ((off[:, 0] * s) * S[1] + off[:, 1] * s) * S[2] + off[:, 2] * s  # (27,)
        tables.append((last, d))

    def read(sel: slice) -> np.ndarray:
        b = base[sel]
        out = np.empty((len(b), len(cfg.scales), C, 27), np.float32)
        for k, (last, d) in enumerate(tables):
            out[:, k] = last[b[:, None] + d[None, :]].transpose(0, 2, 1)
        return out.reshape(len(b), -1)

    return read


def local_features(chans: np.ndarray, ijk: np.ndarray, cfg: DecoderConfig) -> np.ndarray:
    """(N, inputs) float32: feature_reader's features of every voxel in ijk."""
    return feature_reader(chans, ijk, cfg)(slice(None))


def ramp_target(signed_distance_m: np.ndarray, voxel_m: float) -> np.ndarray:
    """The decoder's target: 1 inside, 0 outside, a linear ramp over RAMP_VOXELS voxels across the
    surface (signed distance positive outside), 0.5 on it."""
    return np.clip(0.5 - signed_distance_m / (RAMP_VOXELS * voxel_m), 0.0, 1.0).astype(np.float32)


@torch.inference_mode()
def decode(net: LocalDecoder, field: np.ndarray, hull: np.ndarray | None, ev) -> np.ndarray:
    """The fine field with the decoder's ramp at its query voxels (surface at 0.5)."""
    band = ~np.isnan(ev.tsdf)
    ijk = query_voxels(field, band, net.cfg)
    out = (field > 0.5).astype(np.float32)  # settled voxels: decided
    if len(ijk):
        read = feature_reader(fine_channels(field, hull, ev), ijk, net.cfg)
        # One thread: the MLP is a small share of the decode (42 of 102 ms for 20 000 voxels), and
        # torch's thread pool, woken by it, spins after each op. With every core busy (the node
        # beside its camera stream) that doubled the decode (2 threads 312 ms, 1 thread 180 ms)
        # and the node's latency (soak median 10.2 s, 5.4 s with one); on an idle host one thread
        # costs 18 ms here and 0.12 s on the speed bench's one-view object (README, Speed).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for k in range(0, len(ijk), DECODE_CHUNK):  # a chunk's features at a time: bounded memory
                sel = slice(k, k + DECODE_CHUNK)
                ramp = torch.sigmoid(net(torch.from_numpy(read(sel)))).numpy()
                out[ijk[sel, 0], ijk[sel, 1], ijk[sel, 2]] = ramp
        finally:
            torch.set_num_threads(threads)
    return out


# --------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------

def save_decoder(net: LocalDecoder, path: str | Path, meta: dict | None = None) -> None:
    from .model import write_safetensors

    write_safetensors(net, path, meta)


def load_decoder(path: str | Path) -> LocalDecoder:
    from .model import load_net

    return load_net(path, lambda d: DecoderConfig(**{**d, "scales": tuple(d["scales"])}), LocalDecoder,  # type: ignore[return-value]
                    "local decoder weights")


def decoder_fine_res(path: str | Path) -> int:
    """The grid a decoder file was trained on, from its header alone (no tensors read)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return int(json.loads((f.metadata() or {})["config"])["fine_res"])


# --------------------------------------------------------------------------------------------
# Training data: the generator's fields on fresh scenes, with the true ramp at the query voxels
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DecoderTrainConfig(LoopConfig):
    data: str = "data/decoder_train"  # train split, a seed the generator was not trained on
    out: str = "runs/decoder"
    generator: str = str(Path(__file__).parent / "weights" / "amodalgen3d_flow.safetensors")
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
    from .model import learned_method

    return learned_method("amodalgen3d", generator, threads=1, decoder=0)


def decoder_scene_samples(scene: Path, cfg: DecoderTrainConfig) -> list[dict]:
    """Per sample (1-4 random views of the scene, augmented as the generator's data): the local
    features and true ramp of up to points_per_sample query voxels, half of them within two
    voxels of the true surface."""
    from .geometry import transform
    from .metrics import distance_to_mesh, inside
    from .observation import observe
    from .synth import load_gt
    from .train import augment_views
    from .views import read_views_dir

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
    from .backends import file_sha256

    return Path(cfg.data) / (f"decoder_{file_sha256(cfg.generator)[:12]}_s{cfg.seed}_n{cfg.samples_per_scene}"
                             f"_p{cfg.points_per_sample}")


def prepare_decoder(cfg: DecoderTrainConfig, progress: bool = True) -> dict[str, np.ndarray]:
    """Shards under shard_dir(cfg), made once, in parallel, resumably."""
    from .train import make_shards

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
    from .backends import file_sha256
    from .train import fit

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
