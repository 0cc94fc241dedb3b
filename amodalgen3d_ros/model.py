"""AmodalGen3D, adapted to metric robot data on a CPU: the whole model in one file.

Sections, in order: embedders, attention modules (View-Wise Cross Attention, Stereo-Conditioned
Cross Attention), block, model, initialisation, flow-matching sampler, the deterministic
reference, loading shipped weights, and the reconstruction methods built on them.

Shapes: B batch, V views, T = (R/P)^3 3D tokens, N image tokens per view, D width.
The generator works on occupancy in [-1, 1] over a 32^3 grid in the object cube (features.py),
patchified into 4^3 patches (512 tokens).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .features import GEO_CHANNELS, IMG_CHANNELS, FeatureConfig, ModelInputs, hull_columns

WEIGHTS_DIR = Path(__file__).parent / "weights"
# The sampler's defaults: the mean of K samples estimates the occupancy probability, and with 4
# samples its noise costs more than coarse Euler steps do (validation scenes, same network work:
# 4 steps x 8 samples gave Chamfer 5.82 / 4.69 / 3.83 mm at 1 / 2 / 4 views, 8 x 4 gave 6.11 / 4.89
# / 3.96, 2 x 16 gave 6.20 / 5.09 / 4.08). The generator started from the reference does better
# with 2 steps than 4 at half the cost (24 validation scenes, scripts/sampler_sweep.py: 5.33 / 4.55
# / 3.40 mm against 5.44 / 4.61 / 3.45, F@5 and IoU higher at every view count; 8 steps worse).
SAMPLING_STEPS = 2
NUM_SAMPLES = 8


@dataclass(frozen=True)
class ModelConfig:
    res: int = 32  # occupancy grid side
    patch: int = 4  # 3D patch side: (32/4)^3 = 512 tokens
    width: int = 128  # token width; 128 keeps a CPU forward near 30 ms
    depth: int = 4  # blocks
    heads: int = 4
    mlp_ratio: float = 4.0
    crop: int = 32  # view crop side (features.FeatureConfig.crop)
    max_views: int = 4
    geo_channels: int = len(GEO_CHANNELS)
    img_channels: int = len(IMG_CHANNELS)
    mode: str = "flow"  # "flow": generator; "regress": the deterministic reference (one step, BCE)
    # flow mode only: what the last layer predicts. "velocity": eps - z_0 directly (MSE);
    # "x0": the clean occupancy's logits (BCE), from which the velocity is derived in forward()
    predict: str = "velocity"
    view_fusion: str = "visibility"  # "visibility" (paper), "mean" (ablation)
    use_vwca: bool = True  # View-Wise Cross Attention
    use_scca: bool = True  # Stereo-Conditioned Cross Attention
    use_gate: bool = True  # the per-key gate of SCCA
    cond_dropout: float = 0.1  # for classifier-free guidance
    amodal_prior: bool = False  # views completed by the 2D amodal prior (img_channels 15); old weights lack it

    @property
    def tokens(self) -> int:
        return (self.res // self.patch) ** 3


# --------------------------------------------------------------------------------------------
# Embedders
# --------------------------------------------------------------------------------------------

def sincos_3d(grid: int, dim: int) -> torch.Tensor:
    """(grid^3, dim) fixed 3D sine-cosine position embedding (dim split over the 3 axes)."""
    d = dim // 6 * 2
    omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d // 2))
    coords = torch.stack(torch.meshgrid(*[torch.arange(grid, dtype=torch.float64)] * 3, indexing="ij"), -1).reshape(-1, 3)
    parts = []
    for a in range(3):
        out = coords[:, a : a + 1] * omega[None]
        parts += [torch.sin(out), torch.cos(out)]
    emb = torch.cat(parts, 1)
    return F.pad(emb, (0, dim - emb.shape[1])).float()


class TimestepEmbedder(nn.Module):
    """Scalar t in [0, 1] -> (B, D), as in DiT."""

    def __init__(self, width: int, freq_dim: int = 128):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        args = (t[:, None].float() * 1000) * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], -1))


class ImageEncoder(nn.Module):
    """View crop (B*V, C_img, 32, 32) -> image tokens (B*V, 16, D). The crop carries each pixel's
    ray (direction and moment in the cube frame), so tokens know where they look in the cube.
    16 tokens a view keep View-Wise Cross Attention cheap on a CPU."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w = cfg.width
        self.net = nn.Sequential(
            nn.Conv2d(cfg.img_channels, w // 2, 3, padding=1), nn.GELU(),
            nn.Conv2d(w // 2, w // 2, 4, stride=2, padding=1), nn.GELU(),  # 16x16
            nn.Conv2d(w // 2, w, 4, stride=2, padding=1), nn.GELU(),  # 8x8
            nn.Conv2d(w, w, 4, stride=2, padding=1), nn.GELU(),  # 4x4
            nn.Conv2d(w, w, 1))
        self.pos = nn.Parameter(torch.zeros(1, (cfg.crop // 8) ** 2, w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(2).transpose(1, 2) + self.pos  # (B*V, N, D)


# --------------------------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------------------------

class SelfAttention(nn.Module):
    """Multi-head self-attention written with scaled_dot_product_attention, so it exports to ONNX
    as standard ops (nn.MultiheadAttention's eval fast path does not). Parameter names, shapes and
    initialisation order are nn.MultiheadAttention's, so weights and seeds carry over."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        H = self.heads
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).view(B, T, 3, H, D // H).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, T, D/H)
        return self.out_proj(out.transpose(1, 2).reshape(B, T, D))


class CrossAttention(nn.Module):
    """Multi-head cross attention with an optional additive bias on the logits per key."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, c: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, D) queries; c (B, N, D) keys/values; bias (B, H, 1, N) added to logits."""
        B, T, D = x.shape
        H = self.heads
        q = self.q(x).view(B, T, H, D // H).transpose(1, 2)
        k, v = self.kv(c).view(B, c.shape[1], 2, H, D // H).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, H, T, D/H)
        return self.proj(out.transpose(1, 2).reshape(B, T, D))


class ViewWiseCrossAttention(nn.Module):
    """The 3D tokens attend to each view's image tokens separately; the per-view results are
    fused with weights w_n proportional to the view's visibility ratio tau_n (paper, Sec. 3).
    Views are batched (B*V), never looped over, so the graph exports as standard ops."""

    def __init__(self, width: int, heads: int, fusion: str = "visibility"):
        super().__init__()
        self.attn = CrossAttention(width, heads)
        self.fusion = fusion

    def forward(self, x: torch.Tensor, img: torch.Tensor, tau: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """x (B, T, D); img (B, V, N, D); tau (B, V); valid (B, V) bool -> (B, T, D)."""
        B, T, D = x.shape
        V, N, H = img.shape[1], img.shape[2], self.attn.heads
        a = self.attn
        # The query projection is computed once, not per view, and the output projection after
        # the fusion (it is linear: sum_n w_n proj(o_n) = W sum_n w_n o_n + b sum_n w_n): the same
        # function as attending per view and projecting each, in a third of the work.
        q = a.q(x).view(B, 1, T, H, D // H).transpose(2, 3).expand(B, V, H, T, D // H).reshape(B * V, H, T, D // H)
        k, v = a.kv(img.reshape(B * V, N, D)).view(B * V, N, 2, H, D // H).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, V, T, D)
        w = (tau.clamp_min(0.02) if self.fusion == "visibility" else torch.ones_like(tau)) * valid.float()
        wsum = w.sum(1, keepdim=True)
        w = w / wsum.clamp_min(1e-6)
        fused = (o * w[:, :, None, None]).sum(1)
        return F.linear(fused, a.proj.weight) + a.proj.bias * (wsum > 0).float()[:, :, None]


class StereoConditionedCrossAttention(nn.Module):
    """The 3D tokens attend to tokens of the observed partial geometry (8^3-voxel patches of the
    cube, positions shared with the 3D tokens' embedding); each key is gated by
    g = sigmoid(MLP(c_geo)), added as log g to the attention logits, so unreliable geometry
    (noise, holes, misregistration) can be ignored per token."""

    def __init__(self, width: int, heads: int, use_gate: bool = True):
        super().__init__()
        self.attn = CrossAttention(width, heads)
        self.use_gate = use_gate
        self.gate = nn.Sequential(nn.Linear(width, width // 2), nn.SiLU(), nn.Linear(width // 2, heads))

    def forward(self, x: torch.Tensor, geo: torch.Tensor) -> torch.Tensor:
        bias = None
        if self.use_gate:
            log_g = F.logsigmoid(self.gate(geo))  # (B, N, H)
            bias = log_g.permute(0, 2, 1)[:, :, None, :]  # (B, H, 1, N)
        return self.attn(x, geo, bias)


# --------------------------------------------------------------------------------------------
# Block and model
# --------------------------------------------------------------------------------------------

def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class AmodalBlock(nn.Module):
    """Self-attention, View-Wise Cross Attention, Stereo-Conditioned Cross Attention, MLP;
    adaLN-Zero conditioning on the timestep, gates zeroed at init so blocks start as identity."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w, h = cfg.width, cfg.heads
        self.cfg = cfg
        self.norm1 = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        self.self_attn = SelfAttention(w, h)
        self.norm_v = nn.LayerNorm(w, eps=1e-6)
        self.vwca = ViewWiseCrossAttention(w, h, cfg.view_fusion)
        self.norm_g = nn.LayerNorm(w, eps=1e-6)
        self.scca = StereoConditionedCrossAttention(w, h, cfg.use_gate)
        self.norm2 = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(w, int(w * cfg.mlp_ratio)), nn.GELU(approximate="tanh"),
                                 nn.Linear(int(w * cfg.mlp_ratio), w))
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(w, 6 * w))

    def forward(self, x, c, img, tau, valid, geo):
        shift_sa, scale_sa, gate_sa, shift_mlp, scale_mlp, gate_mlp = self.adaLN(c).chunk(6, dim=1)
        h = modulate(self.norm1(x), shift_sa, scale_sa)
        x = x + gate_sa[:, None] * self.self_attn(h)  # (B, T, D)
        if self.cfg.use_vwca:
            x = x + self.vwca(self.norm_v(x), img, tau, valid)
        if self.cfg.use_scca:
            x = x + self.scca(self.norm_g(x), geo)
        x = x + gate_mlp[:, None] * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class AmodalGen3D(nn.Module):
    """Velocity (flow mode) or occupancy logits (regress mode) over the object cube.

    forward(z, t, geo, views, tau, valid):
      z (B, 1, R, R, R) noisy occupancy in [-1, 1] (zeros in regress mode); t (B,) in [0, 1];
      geo (B, C_geo, R, R, R) partial geometry; views (B, V, C_img, crop, crop);
      tau (B, V) visibility ratios; valid (B, V) bool -> (B, 1, R, R, R).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        w, p = cfg.width, cfg.patch
        # the observed geometry also enters the token stream directly: it is aligned with it
        self.x_embed = nn.Conv3d(1 + cfg.geo_channels, w, p, stride=p)
        # SCCA keys: coarser geometry tokens (8^3 patches: 64 keys) keep the attention cheap
        self.geo_embed = nn.Conv3d(cfg.geo_channels, w, 2 * p, stride=2 * p)
        self.register_buffer("pos", sincos_3d(cfg.res // p, w)[None], persistent=False)
        self.register_buffer("geo_pos", sincos_3d(cfg.res // (2 * p), w)[None], persistent=False)
        self.t_embed = TimestepEmbedder(w)
        self.img_enc = ImageEncoder(cfg)
        self.null_img = nn.Parameter(torch.zeros(1, 1, 1, w))  # dropped-condition tokens (CFG)
        self.null_geo = nn.Parameter(torch.zeros(1, 1, w))
        self.blocks = nn.ModuleList([AmodalBlock(cfg) for _ in range(cfg.depth)])
        self.final_norm = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(w, 2 * w))
        self.final = nn.Linear(w, p ** 3)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        def basic(m):
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.apply(basic)
        for conv in (self.x_embed, self.geo_embed):  # patch embedders like linear layers (DiT)
            nn.init.xavier_uniform_(conv.weight.view(conv.weight.shape[0], -1))
            nn.init.zeros_(conv.bias)
        nn.init.normal_(self.t_embed.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embed.mlp[2].weight, std=0.02)
        for b in self.blocks:
            # adaLN-Zero: residual gates start at zero, every block starts as identity
            nn.init.zeros_(b.adaLN[-1].weight)
            nn.init.zeros_(b.adaLN[-1].bias)
            # cross-attention outputs start at zero too, so conditioning is learned in gradually
            nn.init.zeros_(b.vwca.attn.proj.weight)
            nn.init.zeros_(b.scca.attn.proj.weight)
            # the gate starts open (sigmoid(4) ~ 0.98): all geometry is trusted until learned otherwise
            nn.init.zeros_(b.scca.gate[-1].weight)
            nn.init.constant_(b.scca.gate[-1].bias, 4.0)
        nn.init.zeros_(self.final_ada[-1].weight)
        nn.init.zeros_(self.final_ada[-1].bias)
        nn.init.zeros_(self.final.weight)
        nn.init.zeros_(self.final.bias)

    def patchify_tokens(self, x: torch.Tensor, conv: nn.Conv3d) -> torch.Tensor:
        return conv(x).flatten(2).transpose(1, 2)  # (B, T, D)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, p^3) -> (B, 1, R, R, R)."""
        B = x.shape[0]
        g, p = self.cfg.res // self.cfg.patch, self.cfg.patch
        x = x.view(B, g, g, g, p, p, p).permute(0, 1, 4, 2, 5, 3, 6)
        return x.reshape(B, 1, g * p, g * p, g * p)

    def encode_conditions(self, geo, views, drop_cond: torch.Tensor | None = None):
        """Image tokens (B, V, N, D) and geometry tokens (B, T/8, D): computed once per object,
        reused at every sampling step."""
        B, V = views.shape[:2]
        geo_tok = self.patchify_tokens(geo, self.geo_embed) + self.geo_pos  # (B, T/8, D)
        img = self.img_enc(views.flatten(0, 1)).view(B, V, -1, self.cfg.width)  # (B, V, N, D)
        if drop_cond is not None:  # classifier-free guidance: replace conditions by null tokens
            d = drop_cond.float()
            img = img * (1 - d)[:, None, None, None] + self.null_img * d[:, None, None, None]
            geo_tok = geo_tok * (1 - d)[:, None, None] + self.null_geo * d[:, None, None]
        return img, geo_tok

    def forward(self, z, t, geo, views, tau, valid, drop_cond: torch.Tensor | None = None, cond=None):
        out = self.predict_raw(z, t, geo, views, tau, valid, drop_cond, cond)
        if self.cfg.mode == "flow" and self.cfg.predict == "x0":
            return velocity_from_x0(z, t, out)
        return out

    def predict_raw(self, z, t, geo, views, tau, valid, drop_cond: torch.Tensor | None = None, cond=None):
        """The last layer's output: velocity, clean-occupancy logits (x0) or occupancy logits (regress)."""
        img, geo_tok = cond if cond is not None else self.encode_conditions(geo, views, drop_cond)
        x = self.patchify_tokens(torch.cat([z, geo], 1), self.x_embed) + self.pos  # (B, T, D)
        c = self.t_embed(t)  # (B, D)
        for blk in self.blocks:
            x = blk(x, c, img, tau, valid, geo_tok)
        shift, scale = self.final_ada(c).chunk(2, dim=1)
        x = self.final(modulate(self.final_norm(x), shift, scale))  # (B, T, p^3)
        return self.unpatchify(x)


# --------------------------------------------------------------------------------------------
# Flow matching: z_t = (1 - t) z_0 + t eps, velocity target eps - z_0; sampling integrates t: 1 -> 0
# --------------------------------------------------------------------------------------------

def velocity_from_x0(z: torch.Tensor, t: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """v = (z_t - x0) / t with x0 = 2 sigmoid(logits) - 1: the Euler step to t' then lands on
    z_t' = (t'/t) z_t + (1 - t'/t) x0, and the last step (t' = 0) on x0 itself, a soft occupancy."""
    x0 = torch.tanh(0.5 * logits)  # = 2 sigmoid - 1
    return (z - x0) / t.clamp(min=1e-3)[:, None, None, None, None]


def flow_matching_loss(model: AmodalGen3D, occ: torch.Tensor, geo, views, tau, valid) -> torch.Tensor:
    """occ (B, 1, R, R, R) in {0, 1}."""
    z0 = occ * 2 - 1
    B = z0.shape[0]
    if model.cfg.predict == "x0":
        # t with density 2t: most signal near pure noise, where the first sampling step must find
        # the whole shape from the conditions alone (at t = 1 this is the reference's task)
        t = torch.rand(B).sqrt()
    else:
        # logit-normal t: more training signal at mid noise levels, where the shape is decided
        t = torch.sigmoid(torch.randn(B))
    eps = torch.randn_like(z0)
    zt = (1 - t)[:, None, None, None, None] * z0 + t[:, None, None, None, None] * eps
    drop = torch.rand(B) < model.cfg.cond_dropout
    if model.cfg.predict == "x0":
        # the same velocity field, learned through its clean-shape estimate: BCE on binary
        # occupancy instead of MSE on a velocity dominated by the noise it has to cancel
        logits = model.predict_raw(zt, t, geo, views, tau, valid, drop_cond=drop)
        return F.binary_cross_entropy_with_logits(logits, occ)
    v = model(zt, t, geo, views, tau, valid, drop_cond=drop)
    return F.mse_loss(v, eps - z0)


def regression_loss(model: AmodalGen3D, occ, geo, views, tau, valid) -> torch.Tensor:
    B = occ.shape[0]
    logits = model(torch.zeros_like(occ), torch.zeros(B), geo, views, tau, valid)
    return F.binary_cross_entropy_with_logits(logits, occ)


@torch.no_grad()
def sample(net, geo, views, tau, valid, steps: int = SAMPLING_STEPS, samples: int = NUM_SAMPLES, seed: int = 0,
           guidance: float = 1.0):
    """K samples for one object (batch-1 inputs) -> (K, R, R, R) occupancy in [-1, 1].

    ``net``: an AmodalGen3D or a backend (backends.py: encode / velocity). Euler steps from t = 1
    (noise) to t = 0 (data); the conditions are encoded once. guidance > 1 applies
    classifier-free guidance (torch only).
    """
    from .backends import TorchBackend

    backend = TorchBackend(net) if isinstance(net, AmodalGen3D) else net
    K = samples
    R = geo.shape[-1]
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(K, 1, R, R, R, generator=g)
    if hasattr(backend, "velocity_numpy") and guidance == 1.0:
        # No torch op between the steps: torch's idle OpenMP threads spin for a while after each
        # op and starve onnxruntime's (measured: 8 steps took 0.51 s instead of 0.28 s).
        zn = z.numpy()
        # the conditions are the same for every sample: encoded once, then repeated
        cond_n = tuple(np.repeat(c, K, axis=0) for c in backend.encode_numpy(geo.numpy(), views.numpy()))
        geo_n, tau_n, valid_n = (np.repeat(a.numpy(), K, axis=0) for a in (geo, tau, valid))
        ts_n = np.linspace(1, 0, steps + 1, dtype=np.float32)
        for i in range(steps):
            v_n = backend.velocity_numpy(zn, np.full(K, ts_n[i], np.float32), geo_n, tau_n, valid_n, cond_n)
            zn = zn + (ts_n[i + 1] - ts_n[i]) * v_n
        return torch.from_numpy(np.ascontiguousarray(zn[:, 0]))
    geo_k, tau_k, valid_k = (a.expand(K, *a.shape[1:]).contiguous() for a in (geo, tau, valid))
    cond = tuple(c.expand(K, *c.shape[1:]).contiguous() for c in backend.encode(geo, views))
    cond_null = None
    if guidance != 1.0:
        if not isinstance(backend, TorchBackend):
            raise ValueError("classifier-free guidance needs the torch backend")
        cond_null = backend.model.encode_conditions(geo_k, views.expand(K, *views.shape[1:]), torch.ones(K, dtype=torch.bool))
    ts = torch.linspace(1, 0, steps + 1)
    for i in range(steps):
        t = ts[i].expand(K).contiguous()
        v = backend.velocity(z, t, geo_k, tau_k, valid_k, cond)
        if cond_null is not None:
            v_u = backend.velocity(z, t, geo_k, tau_k, valid_k, cond_null)
            v = v_u + guidance * (v - v_u)
        z = z + (ts[i + 1] - ts[i]) * v
    return z[:, 0]


# --------------------------------------------------------------------------------------------
# Weights: safetensors plus a JSON card of the config; never pickle
# --------------------------------------------------------------------------------------------

def write_safetensors(net: nn.Module, path: str | Path, meta: dict | None = None) -> None:
    """A network's tensors, its config (a dataclass at net.cfg) and a meta JSON, in one file; the
    shipped networks' one format (the prior's and the local decoder's too)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    save_file(tensors, str(path), metadata={"config": json.dumps(asdict(net.cfg)), "meta": json.dumps(meta or {})})  # type: ignore[call-overload]


def read_safetensors(path: str | Path, make_cfg, what: str = "weights") -> tuple[object, dict]:
    """(make_cfg(stored config dict), tensors) of a file written by write_safetensors; a missing or
    corrupt file is a WeightsError naming `what`. Nothing is unpickled."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{what} not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            cfg = make_cfg(json.loads((f.metadata() or {})["config"]))
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, KeyError, json.JSONDecodeError, TypeError, OSError) as e:
        raise WeightsError(f"corrupt {what} {path}: {e}") from None
    return cfg, state


def load_net(path: str | Path, make_cfg, make_net, what: str) -> nn.Module:
    """make_net(cfg) with the tensors of a write_safetensors file loaded strictly, in eval mode; a
    file that does not fit is a WeightsError naming `what`."""
    cfg, state = read_safetensors(path, make_cfg, what)
    net = make_net(cfg)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise WeightsError(f"{what} {path} do not fit the network: {str(e).splitlines()[0]}") from None
    return net.eval()


def save_weights(model: AmodalGen3D, path: str | Path, meta: dict | None = None) -> None:
    write_safetensors(model, path, meta)


class WeightsError(RuntimeError):
    """Missing or corrupt weights: one clear line."""


def load_weights(path: str | Path) -> AmodalGen3D:
    cfg, state = read_safetensors(path, lambda d: ModelConfig(**d))
    model = AmodalGen3D(cfg)  # type: ignore[arg-type]
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise WeightsError(f"weights {path} do not fit the model (missing {len(missing)}, unexpected {len(unexpected)})")
    return model.eval()


def weights_meta(path: str | Path) -> dict:
    """The 'meta' JSON stored in a weights file (steps, data, calibrated level, ...)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("meta", "{}"))


def to_batch(mi: ModelInputs) -> tuple[torch.Tensor, ...]:
    """ModelInputs -> (geo, views, tau, valid) tensors with batch 1."""
    return (torch.from_numpy(mi.geo)[None], torch.from_numpy(mi.views)[None],
            torch.from_numpy(mi.tau)[None], torch.from_numpy(mi.view_valid)[None])


# --------------------------------------------------------------------------------------------
# Reconstruction methods built on the networks
# --------------------------------------------------------------------------------------------

DEFAULT_WEIGHTS = {"amodalgen3d": WEIGHTS_DIR / "amodalgen3d_flow.safetensors",
                   "amodal_regressor": WEIGHTS_DIR / "amodal_regressor.safetensors"}


class LearnedMethod:
    """Observation -> (closed mesh in the output frame, per-vertex confidence).

    The network predicts occupancy over the 32^3 cube; the result then agrees with what was seen,
    on a finer grid: space the depth rays saw as empty is cleared, the observed surface band comes
    from the views' TSDF, and nothing lies under the support plane.
    """

    def __init__(self, weights: str | Path, steps: int = SAMPLING_STEPS, samples: int = NUM_SAMPLES, seed: int = 0,
                 guidance: float = 1.0, fine_res: int = 64, threads: int | None = None, backend: str = "torch",
                 onnx_dir: str | Path | None = None, engine_cache_dir: str | Path | None = None,
                 precision: str = "fp16", force_rebuild: bool = False, hull_residual: bool = True,
                 level: float | None = None, prior_weights: str | Path | None = None, hypotheses: int = 0,
                 decoder: int = 0, decoder_weights: str | Path | None = None):
        from .backends import file_sha256, make_backend, make_prior_runner

        self.hull_residual = hull_residual
        self.model = load_weights(weights)
        meta = weights_meta(weights)
        weights_sha = file_sha256(weights)  # the backend's cache key and the decoder's calibration key
        self.prior = None
        if self.model.cfg.amodal_prior:
            from .amodal_prior import PRIOR_WEIGHTS, load_prior

            prior_path = Path(prior_weights or PRIOR_WEIGHTS)
            prior_net = load_prior(prior_path)
            sha, want = file_sha256(prior_path), meta.get("prior_sha256")
            if want and sha != want:
                raise WeightsError(f"{weights} was trained with another 2D amodal prior than {prior_path}")
            self.prior = make_prior_runner(backend, prior_net, onnx_dir, threads or 0, sha)
        # the occupancy level of the surface: calibrated on validation scenes (not the benchmark's)
        # and stored in the weights' metadata by `amodalgen3d calibrate`; 0.5 if absent
        self.level = level if level is not None else meta.get("level", 0.5)
        # and per view count where calibrated so (a level given here holds for every count)
        self.level_by_views = {} if level is not None else {
            int(n): float(lv) for n, lv in meta.get("level_by_views", {}).items()}
        # and how much lower it lies in hidden space, per view count (hidden_offset_for)
        self.hidden_offset_by_views = {} if level is not None else {
            int(n): float(d) for n, d in meta.get("hidden_offset_by_views", {}).items()}
        # how the field's slope becomes P(surface within 5 mm): fitted by the same command (the
        # slope alone over-states the surface's sharpness after short training); identity if absent
        conf = meta.get("confidence", {})
        self.sigma_scale, self.sigma_floor_m = conf.get("sigma_scale", 1.0), conf.get("sigma_floor_m", 0.0)
        self.occlusion_gain_m = conf.get("occlusion_gain_m", 0.0)  # files fitted before it: no such term
        self.confidence_by_views = confidence_params_by_views(meta.get("confidence_by_views", {}))
        self.backend = make_backend(backend, self.model, onnx_dir, threads or 0, weights_sha, engine_cache_dir,
                                    precision, force_rebuild)
        self.steps, self.samples, self.seed, self.guidance = steps, samples, seed, guidance
        cal = meta.get("calibration", {}).get("sampler")
        if cal and self.model.cfg.mode == "flow" and (cal["steps"], cal["samples"]) != (steps, samples):
            # fewer samples or other steps change how sharp the mean occupancy is: the level and the
            # confidence fitted for one sampler are off for another
            logging.getLogger("amodalgen3d.model").warning(
                f"{Path(weights).name} was calibrated for {cal['steps']} steps x {cal['samples']} samples, runs at "
                f"{steps} x {samples}: surface level and confidence may be off (amodalgen3d calibrate --steps "
                f"{steps} --samples {samples} on a copy)")
        # the generator's own samples as meshes too (each its own plausible completion), at most K
        self.hypotheses = min(hypotheses, samples) if self.model.cfg.mode == "flow" else 0
        if fine_res <= 0 or fine_res % self.model.cfg.res:
            # the network's grid is refined by an integer factor (voxel centres aligned)
            raise ValueError(f"fine_res {fine_res} is not a positive multiple of the network's grid, {self.model.cfg.res}")
        self.fine_res = fine_res
        self.threads = threads
        # the local decoder (local_decoder.py): the fine field near the surface, read off the coarse
        # one and the fine observation; its level and confidence are fitted with it, per network
        self.decoder = None
        if decoder:
            from .local_decoder import DECODER_WEIGHTS, load_decoder

            dpath = Path(decoder_weights or DECODER_WEIGHTS)
            self.decoder = load_decoder(dpath)
            if self.decoder.cfg.fine_res != fine_res:
                raise ValueError(f"the local decoder was trained on a {self.decoder.cfg.fine_res}^3 grid, "
                                 f"not fine_res {fine_res}")
            # the level and confidence of this network followed by the decoder, calibrated together
            # (`calibrate WEIGHTS --decoder`) and kept in the decoder's file per network
            cal = weights_meta(dpath).get("calibration_by_network", {}).get(weights_sha)
            if cal is None and level is None:  # (a caller that sets the level is calibrating)
                logging.getLogger("amodalgen3d.model").warning(
                    f"{dpath.name} holds no calibration with {Path(weights).name}: surface at its ramp's 0.5, "
                    f"confidence as fitted without the decoder (amodalgen3d calibrate {weights} --decoder {dpath})")
            cal = cal or {}
            if level is None:
                self.level = cal.get("level", 0.5)
                self.level_by_views = {int(n): float(lv) for n, lv in cal.get("level_by_views", {}).items()}
                self.hidden_offset_by_views = {int(n): float(d) for n, d in cal.get("hidden_offset_by_views", {}).items()}
            if "confidence" in cal:
                c = cal["confidence"]
                self.sigma_scale, self.sigma_floor_m, self.occlusion_gain_m = (
                    c["sigma_scale"], c["sigma_floor_m"], c["occlusion_gain_m"])
                self.confidence_by_views = confidence_params_by_views(cal.get("confidence_by_views", {}))
        self.fcfg = FeatureConfig(res=self.model.cfg.res, crop=self.model.cfg.crop, max_views=self.model.cfg.max_views,
                                  amodal_prior=self.model.cfg.amodal_prior)

    def level_for(self, n_views: int) -> float:
        """The surface level for a field from n views: that of the largest calibrated view count
        not above n (with fits at 4 and 6, 5 views take 4's), else the pooled one. With the local decoder, its own
        calibration's (0.5, the ramp's crossing, if it has none)."""
        return for_view_count(self.level_by_views, n_views, self.level)

    def hidden_offset_for(self, n_views: int) -> float:
        """How much lower than level_for the surface is drawn in hidden space (hidden_space), for a
        field from n views, as calibrated (0 for files calibrated before it)."""
        return for_view_count(self.hidden_offset_by_views, n_views, 0.0)

    def confidence_params(self, n_views: int) -> tuple[float, float, float]:
        """(scale, floor, occlusion gain) of the confidence for a field from n views, chosen as
        level_for chooses the level."""
        return for_view_count(self.confidence_by_views, n_views,
                              (self.sigma_scale, self.sigma_floor_m, self.occlusion_gain_m))

    def occupancy_samples(self, mi: ModelInputs) -> tuple[np.ndarray, np.ndarray]:
        """Mean occupancy probability (R, R, R) and each sample's own (K, R, R, R) (the
        reference: its one prediction, K = 1)."""
        if self.threads:
            torch.set_num_threads(self.threads)
        geo, views, tau, valid = to_batch(mi)
        with torch.inference_mode():
            if self.model.cfg.mode == "flow":
                z = sample(self.backend, geo, views, tau, valid, self.steps, self.samples, self.seed, self.guidance)
                # numpy, not torch: a torch op here wakes its idle thread pool (tens of ms on 2 cores)
                if self.model.cfg.predict == "x0":
                    # each sample ends on its predicted clean shape, a soft occupancy: kept soft
                    # (validation scenes, step 1500: 5.85 vs 5.95 mm Chamfer at 1 view against
                    # thresholding). The last step alone: with the 6000-step weights it beats
                    # averaging in the first step's estimates (24 validation scenes: 5.30 / 4.51 /
                    # 3.54 mm Chamfer at 1 / 2 / 4 views against 5.39 / 4.55 / 3.55), which had
                    # helped the 4000-step weights.
                    occ = np.clip((z.numpy() + 1) * 0.5, 0, 1)
                    return occ.mean(0), occ
                occ = (z.numpy() > 0).astype(np.float32)
                return occ.mean(0), occ
            p = torch.sigmoid(self.model(torch.zeros(1, 1, *geo.shape[2:]), torch.zeros(1), geo, views, tau, valid))[0]
            return p[0].numpy(), p.numpy()

    def field(self, obs) -> dict:
        """The fine occupancy field in the cube (before the surface level is applied)."""

        from .features import in_frame, model_inputs
        from .observation import ray_evidence

        mi = model_inputs(obs, self.fcfg, prior=self.prior)
        prob, each = self.occupancy_samples(mi)  # confidence is read from prob's slope (surface_sigma)
        R, Rf = prob.shape[0], self.fine_res
        f = Rf / R
        grid = mi.grid(Rf)
        cobs = in_frame(obs, mi.T_out_cube)
        ev = ray_evidence(cobs, grid, trunc_m=2 * grid.voxel_m)
        band = ~np.isnan(ev.tsdf)
        use_hull = self.hull_residual and "support_hull" in GEO_CHANNELS
        hull_fine = None
        if use_hull:
            hull_fine = hull_field(cobs, grid)
            hull_coarse = upsample_linear(mi.geo[GEO_CHANNELS.index("support_hull")], f)

        def complete(p: np.ndarray) -> np.ndarray:
            # coarse -> fine by trilinear interpolation of the probability (voxel centres aligned)
            fine = upsample_linear(p, f)
            if use_hull:
                # The network sees the hull on its coarse grid and predicts where to depart from it;
                # apply that departure to the exact hull on the fine grid, so where the network keeps
                # the hull its faces stay exact (a 32^3 voxel is ~1 cm), and concavities, handles and
                # hidden extents still come from the network.
                fine = np.clip(hull_fine + (fine - hull_coarse), 0.0, 1.0)
            fine[(ev.free > 0) & ~band] = 0.0  # seen empty
            fine[ev.below_plane] = 0.0
            return fine

        out = {"field": complete(prob), "tsdf": ev.tsdf, "band": band, "grid": grid, "mi": mi, "evidence": ev,
               "hull": hull_fine, "hypotheses": [complete(p) for p in each[: self.hypotheses]],
               "n_views": len(obs.used_views()), "visible_fraction": obs.fused.visible_fraction}
        if self.decoder is not None:
            from .local_decoder import decode

            # the confidence reads both: the samples' mean (did they agree?) and the decoder's ramp
            # (is it sure where, between them, the surface lies?; mesh_and_sigma)
            out["coarse_field"] = out["field"]
            out["field"] = decode(self.decoder, out["field"], hull_fine, ev)
            out["hypotheses"] = [decode(self.decoder, h, hull_fine, ev) for h in out["hypotheses"]]
        return out

    def mesh(self, fd: dict, level: float, hidden_offset: float | None = None):
        """Closed mesh (output frame) and per-vertex confidence at a surface level (lower by
        hidden_offset in hidden space; None: as calibrated for the field's view count)."""
        mesh, sigma, measured = self.mesh_and_sigma(fd, level, hidden_offset)
        scale, floor_m, gain_m = self.confidence_params(fd["n_views"])
        conf = confidence_from_sigma(sigma, scale, floor_m, occlusion_gain_m=gain_m,
                                     visible_fraction=fd["visible_fraction"])
        conf = np.where(measured, 1.0, conf)  # measured surface
        return mesh, np.clip(conf, 0, 1).astype(np.float32)

    def mesh_and_sigma(self, fd: dict, level: float, hidden_offset: float | None = None):
        """Closed mesh (output frame), each vertex's surface std (metres) and whether it lies on
        measured surface: the slopes' spreads of mesh_and_sigmas added in quadrature.

        After the local decoder there are two: the samples' mean field's (how much the samples
        agreed) and the decoded field's (the decoder, trained with BCE on a two-voxel ramp,
        flattens its ramp where it is unsure where the surface lies). The first alone ranked the
        inferred vertices' errors less well than before the decoder, which moves the surface away
        from where the samples agreed: on 24 held-out-split validation scenes (seed 555) AUROC per
        object 0.695 / 0.701 / 0.633 at 1 / 2 / 4 views, with both 0.741 / 0.732 / 0.662
        (scripts/confidence_study.py decoder-fit).
        """
        mesh, sigmas, measured = self.mesh_and_sigmas(fd, level, hidden_offset)
        return mesh, np.sqrt(sum(s ** 2 for s in sigmas)), measured

    def mesh_and_sigmas(self, fd: dict, level: float, hidden_offset: float | None = None):
        """Closed mesh (output frame), per vertex the surface std read from each field's slope
        (surface_sigma, metres): the meshed field's, then, after the local decoder, the samples'
        mean's; and whether the vertex lies on measured surface."""

        from .geometry import transform
        from .surface import drop_specks_and_voids, mesh_from_field

        field, band, grid = fd["field"].copy(), fd["band"], fd["grid"]
        if hidden_offset is None:
            hidden_offset = self.hidden_offset_for(fd["n_views"])
        if hidden_offset:
            field = lower_level_in_hidden_space(field, fd["evidence"], band, hidden_offset)
        measured_field = np.clip(level - 0.5 * fd["tsdf"][band], 0, 1)
        field[band] = measured_field  # seen surface: the measurement wins
        field = drop_specks_and_voids(field, level)
        slope_fields = [field]
        if "coarse_field" in fd:  # after the local decoder: the samples' mean's slope too
            coarse = fd["coarse_field"].copy()
            coarse[band] = measured_field
            slope_fields.append(coarse)
        try:
            mesh = mesh_from_field(field, grid, level, smooth_iters=5)
        except ValueError:  # the network saw nothing: fall back to the observation alone
            mesh = mesh_from_field(np.where(band, field, 0.0), grid, level)
        ijk, _ = grid.index_of(mesh.vertices)
        ijk = np.clip(ijk, 0, grid.shape[0] - 1)
        sigmas = [surface_sigma(f, grid, mesh.vertices) for f in slope_fields]
        measured = band[ijk[:, 0], ijk[:, 1], ijk[:, 2]]
        mesh.vertices = transform(fd["mi"].T_out_cube, mesh.vertices)
        return mesh, sigmas, measured

    def __call__(self, obs):
        """(mesh, per-vertex confidence), and with hypotheses > 0 also the first K samples' meshes
        (each through the same agreement with what was seen, confidence not read for them)."""
        fd = self.field(obs)
        level = self.level_for(fd["n_views"])
        mesh, conf = self.mesh(fd, level)
        if not self.hypotheses:
            return mesh, conf
        return mesh, conf, [self.mesh({**fd, "field": h}, level)[0] for h in fd["hypotheses"]]


def surface_sigma(field: np.ndarray, grid, vertices: np.ndarray) -> np.ndarray:
    """Per vertex, the std (metres) of the surface's offset along its normal, read from how sharply
    the mean occupancy over the samples crosses the level there.

    Samples that agree on where the surface is average to a step; where they disagree (or each is
    unsure), to a ramp. If the surface's offset along the normal is normal with std sigma, the
    mean occupancy is its CDF, whose slope at the surface is 1 / (sigma sqrt(2 pi)); so sigma =
    1 / (sqrt(2 pi) |grad p|). (Held-out benchmark: the confidence read from it ranks the
    generator's inferred vertices' errors with AUROC 0.70 / 0.73 / 0.73 at 1 / 2 / 4 views, where
    the samples' per-voxel spread did not rank them at all, 0.53 / 0.47 / 0.42 at step 4000. The
    reference's probability, read the same way, ranks its own as well, 0.70 / 0.73 / 0.73: it is
    used for both.)
    """
    from scipy import ndimage

    idx = ((vertices - grid.origin) / grid.voxel_m - 0.5).T  # voxel centres at (i + 0.5) * voxel
    grad = np.gradient(field.astype(np.float32), grid.voxel_m)  # per metre
    slope = np.sqrt(sum(ndimage.map_coordinates(g, idx, order=1, mode="nearest") ** 2 for g in grad))
    return 1.0 / (np.sqrt(2 * np.pi) * np.maximum(slope, 1e-6))


def lower_level_in_hidden_space(field: np.ndarray, ev, band: np.ndarray, offset: float) -> np.ndarray:
    """The field whose surface at a level lies at level - offset in hidden space: the occupancy
    raised there by offset (cleared space, probability 0, stays empty)."""
    return np.clip(field + offset * hidden_space(ev, band) * (field > 0), 0.0, 1.0)


def hidden_space(ev, band: np.ndarray) -> np.ndarray:
    """Where no ray saw: not seen empty, not in the measured surface's band, not below the support
    plane; blurred over a voxel's neighbours so the level does not step at the boundary.

    With 4 views the generator's mean occupancy there is lower than the reference's (the far side
    of a mug: 0.11 against 0.18, its samples agreeing), so one level for all space cut its hidden
    side short; `calibrate` fits how much lower the level lies here, per view count."""
    from scipy import ndimage

    hidden = (ev.free == 0) & ~band & ~ev.below_plane
    return ndimage.uniform_filter(hidden.astype(np.float32), 3)


def for_view_count(by_views: dict, n_views: int, pooled):
    """What was calibrated for the largest view count not above n_views, else the pooled value."""
    counts = [n for n in by_views if n <= n_views]
    return by_views[max(counts)] if counts else pooled


def confidence_params_by_views(fits: dict) -> dict[int, tuple[float, float, float]]:
    """{view count: (scale, floor, occlusion gain)} from a calibration's confidence_by_views
    (files calibrated before it have none: the pooled fit serves every count)."""
    return {int(n): (c["sigma_scale"], c["sigma_floor_m"], c["occlusion_gain_m"]) for n, c in fits.items()}


def confidence_from_sigma(sigma: np.ndarray, scale: float = 1.0, floor_m: float = 0.0,
                          tol_m: float = 0.005, occlusion_gain_m: float = 0.0,
                          visible_fraction: float | np.ndarray = 1.0) -> np.ndarray:
    """P(|offset| <= tol) = erf(tol / (s sqrt 2)) for an offset with std
    s = sqrt((scale sigma)^2 + floor^2 + (occlusion_gain (1 - visible_fraction))^2): scale, floor
    and gain are fitted on validation scenes (calibrate.py). The floor stands for the error no
    slope shows (the grid, the smoothing, a confidently wrong network); the occlusion term for the
    part of it that grows as less of the object was seen (the samples agree on a guess as readily
    as on a measurement: fitted on the slope alone, objects under 0.6 visible were over-stated by
    0.16 on held-out-split validation scenes, those above by 0.05; scripts/confidence_study.py)."""
    from scipy.special import erf

    hidden = occlusion_gain_m * (1.0 - np.clip(visible_fraction, 0.0, 1.0))
    s = np.sqrt((scale * sigma) ** 2 + floor_m ** 2 + hidden ** 2)
    return erf(tol_m / (np.maximum(s, 1e-9) * np.sqrt(2)))


def upsample_linear(x: np.ndarray, factor: float) -> np.ndarray:
    """ndimage.zoom(x, factor, order=1, mode="nearest", grid_mode=True), written out for the
    factor 2 (each fine centre is 3:1 between its two nearest coarse ones): half the time."""
    from scipy import ndimage

    if factor != 2:
        return ndimage.zoom(x, factor, order=1, mode="nearest", grid_mode=True)
    for a in range(x.ndim):
        x = np.moveaxis(x, a, 0)
        out = np.empty((2 * x.shape[0], *x.shape[1:]), x.dtype)
        out[0::2] = 0.75 * x + 0.25 * np.concatenate([x[:1], x[:-1]])
        out[1::2] = 0.75 * x + 0.25 * np.concatenate([x[1:], x[-1:]])
        x = np.moveaxis(out, 0, a)
    return x


def hull_field(obs, grid) -> np.ndarray:
    """(R, R, R) float in [0, 1]: 0.5 exactly on the support-plane hull's faces, a one-voxel ramp
    across them (signed distance to the hull's planes), so marching cubes puts faces where they are."""
    from scipy.spatial import ConvexHull, QhullError

    from .observation import support_points

    try:
        # merge facets within half a millimetre: a noisy cloud's hull has thousands of tiny facets
        # (a voxels x facets product of gigabytes); merged ones repeat a plane, kept once
        hull = ConvexHull(support_points(obs), qhull_options="Qt C-0.0005")
    except QhullError:
        return np.zeros(grid.shape, np.float32)
    eq = np.unique(np.round(hull.equations, 6), axis=0)
    # voxels over half a voxel outside the hull's bounding box are 0: skip them (same result)
    hp = hull.points[hull.vertices]
    sl = grid.box_slices(hp.min(0) - grid.voxel_m, hp.max(0) + grid.voxel_m)
    out = np.zeros(grid.shape, np.float32)
    # float32 about the box centre: sub-micrometre error on a 0.5 voxel ramp, half the time of float64
    o = (hp.min(0) + hp.max(0)) / 2
    x, y, z = ((np.arange(n)[s_] + 0.5) * grid.voxel_m + g0 - oc for n, g0, s_, oc in zip(grid.shape, grid.origin, sl, o))
    eq_o = np.c_[eq[:, :3], eq[:, 3] + eq[:, :3] @ o]
    # per column, the z-intervals of "half a voxel inside" (value 1) and "within half a voxel" (not
    # 0): only the voxels between them, a shell around the surface, need the distance to the facets
    lo_in, hi_in = hull_columns(eq_o, x, y, -0.5 * grid.voxel_m)
    lo_out, hi_out = hull_columns(eq_o, x, y, 0.5 * grid.voxel_m)
    zz = z[None, None, :]
    box = out[sl]
    box[(zz >= lo_in[..., None]) & (zz <= hi_in[..., None])] = 1.0
    shell = (zz >= lo_out[..., None]) & (zz <= hi_out[..., None]) & (box == 0)
    ii, jj, kk = np.nonzero(shell)
    c = np.stack([x[ii], y[jj], z[kk]], 1).astype(np.float32)
    n, d = eq_o[:, :3].astype(np.float32), eq_o[:, 3].astype(np.float32)
    sd = np.empty(len(c), np.float32)
    for k in range(0, len(c), 65536):  # bounded memory
        sd[k:k + 65536] = (c[k:k + 65536] @ n.T + d).max(1)  # > 0 outside
    box[ii, jj, kk] = np.clip(0.5 - sd / grid.voxel_m, 0.0, 1.0)
    return out


_CACHE: dict[str, LearnedMethod] = {}


def decoder_by_default(weights: str | Path, fine_res: int = 64) -> int:
    """1 if the shipped local decoder holds a calibration with these weights on this grid (so the
    shipped networks run with it, ablation runs' weights without it unless asked), else 0."""
    from .backends import file_sha256
    from .local_decoder import DECODER_WEIGHTS, decoder_fine_res

    if not Path(weights).is_file():  # (loading them says so, clearly)
        return 0
    if not DECODER_WEIGHTS.is_file() or decoder_fine_res(DECODER_WEIGHTS) != fine_res:
        return 0
    return int(file_sha256(weights) in weights_meta(DECODER_WEIGHTS).get("calibration_by_network", {}))


def learned_method(name: str, weights: str | Path | None = None, **kw) -> LearnedMethod:
    """A learned method, loaded once per (name, weights, options); with the local decoder where it
    was calibrated with those weights (decoder_by_default), unless the options say. Called per
    reconstruction (learned_methods): the cache is looked up first, so the default is worked out
    (a hash of the weights) once."""
    path = Path(weights) if weights else DEFAULT_WEIGHTS[name]
    key = json.dumps([name, str(path), sorted(kw.items())])
    if key not in _CACHE:
        if "decoder" not in kw:
            kw["decoder"] = decoder_by_default(path, kw.get("fine_res", 64))
        _CACHE[key] = LearnedMethod(path, **kw)
    return _CACHE[key]


def learned_methods() -> dict:
    """The learned methods whose shipped weights exist, loaded on first use."""
    out = {}
    for name, path in DEFAULT_WEIGHTS.items():
        if path.is_file():
            out[name] = lambda obs, _n=name: learned_method(_n)(obs)
    return out

