"""AmodalGen3D, adapted to metric robot data on a CPU: the whole model in one file.

Sections, in order: embedders, attention modules (View-Wise Cross Attention, Stereo-Conditioned
Cross Attention), block, model, initialisation, losses (flow matching; the deterministic
reference's BCE), the flow-matching sampler, and the weights. The reconstruction method built on
the networks is in learned.py.

Shapes: B batch, V views, T = (R/P)^3 3D tokens, N image tokens per view, D width.
The generator works on occupancy in [-1, 1] over a 32^3 grid in the object cube (features.py),
patchified into 4^3 patches (512 tokens).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .features import GEO_CHANNELS, IMG_CHANNELS, ModelInputs
from .weights_io import WeightsError, read_safetensors, write_safetensors

# The sampler's defaults: the mean of K samples estimates the occupancy probability, and few
# samples cost more in noise than coarse Euler steps do; the generator started from the reference
# needs few steps (the sweep is in the model card).
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
           guidance: float = 1.0, per_call: int = 0):
    """K samples for one object (batch-1 inputs) -> (K, R, R, R) occupancy in [-1, 1].

    ``net``: a backend (backends.py: encode / velocity; an AmodalGen3D runs as
    ``backends.TorchBackend(model)``). Euler steps from t = 1 (noise) to t = 0 (data); the
    conditions are encoded once. guidance > 1 applies classifier-free guidance (torch only).
    ``per_call``: samples per network call on a numpy backend (0: all K at once). The samples do not
    interact, so this changes memory and speed, not the result.
    """
    backend = net
    K = samples
    R = geo.shape[-1]
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(K, 1, R, R, R, generator=g)
    if hasattr(backend, "velocity_numpy") and guidance == 1.0:
        # No torch op between the steps: torch's idle OpenMP threads spin for a while after each
        # op and starve onnxruntime's.
        zn = z.numpy()
        # the conditions are the same for every sample: encoded once, then repeated
        cond_n = tuple(np.repeat(c, K, axis=0) for c in backend.encode_numpy(geo.numpy(), views.numpy()))
        geo_n, tau_n, valid_n = (np.repeat(a.numpy(), K, axis=0) for a in (geo, tau, valid))
        ts_n = np.linspace(1, 0, steps + 1, dtype=np.float32)
        n = per_call or K
        for i in range(steps):
            v_n = np.concatenate([
                backend.velocity_numpy(zn[a:a + n], np.full(len(zn[a:a + n]), ts_n[i], np.float32), geo_n[a:a + n],
                                       tau_n[a:a + n], valid_n[a:a + n], tuple(c[a:a + n] for c in cond_n))
                for a in range(0, K, n)])
            zn = zn + (ts_n[i + 1] - ts_n[i]) * v_n
        return torch.from_numpy(np.ascontiguousarray(zn[:, 0]))
    geo_k, tau_k, valid_k = (a.expand(K, *a.shape[1:]).contiguous() for a in (geo, tau, valid))
    cond = tuple(c.expand(K, *c.shape[1:]).contiguous() for c in backend.encode(geo, views))
    cond_null = None
    if guidance != 1.0:
        if not isinstance(getattr(backend, "model", None), AmodalGen3D):
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
# Weights (the format itself: weights_io.py)
# --------------------------------------------------------------------------------------------

def save_weights(model: AmodalGen3D, path: str | Path, meta: dict | None = None) -> None:
    write_safetensors(model, path, meta)


def load_weights(path: str | Path) -> AmodalGen3D:
    cfg, state = read_safetensors(path, lambda d: ModelConfig(**d))
    model = AmodalGen3D(cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise WeightsError(f"weights {path} do not fit the model (missing {len(missing)}, unexpected {len(unexpected)})")
    return model.eval()


def to_batch(mi: ModelInputs) -> tuple[torch.Tensor, ...]:
    """ModelInputs -> (geo, views, tau, valid) tensors with batch 1."""
    return (torch.from_numpy(mi.geo)[None], torch.from_numpy(mi.views)[None],
            torch.from_numpy(mi.tau)[None], torch.from_numpy(mi.view_valid)[None])
