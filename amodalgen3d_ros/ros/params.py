"""The node's parameters, declared in one place: name, default, description, allowed range.

``config/amodalgen3d.yaml`` mirrors these defaults; the README's table is generated from this
list (``python -m amodalgen3d_ros.ros.params``). No rclpy import here, so the list is testable
without ROS.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ..camera_tracking import OdometryConfig
from ..tracks import BufferConfig
from ..worker import MethodSpec


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None


PARAMS: list[Param] = [
    # inputs
    Param("color_topic", "/camera/camera/color/image_raw", "colour image (rgb8, bgr8, mono8)"),
    Param("depth_topic", "/camera/camera/aligned_depth_to_color/image_raw",
          "depth aligned to colour (16UC1 mm or 32FC1 m); empty: no depth"),
    Param("camera_info_topic", "/camera/camera/color/camera_info", "intrinsics of the colour camera"),
    Param("labels_topic", "/tracker/instance_labels",
          "instance label image (mono8, mono16, 32SC1): 0 background, value = track id"),
    Param("input_reliability", "reliable", "QoS reliability of the image inputs", choices=("reliable", "best_effort")),
    Param("input_depth", 30, "QoS history depth of the image inputs (1 s at 30 Hz: a busy CPU must not cost frames)", 1, 1000),
    Param("sync_mode", "exact", "stamp matching of the inputs", choices=("exact", "approximate")),
    Param("sync_slop_s", 0.02, "largest stamp difference in approximate mode", 0.0, 1.0),
    Param("sync_queue_size", 30, "frames waiting per input for their partners", 1, 1000),
    Param("max_frame_rate_hz", 5.0, "matched frames taken per second at most (sparse views need few; the rest "
          "are counted and skipped before conversion); 0: all", 0.0, 1000.0),
    # view buffer
    Param("max_views", 6, "views kept per track", 1, 32),
    Param("max_tracks", 10, "tracks kept at once", 1, 1000),
    Param("min_visible_px", 200, "views with fewer target pixels are dropped", 1, 1e7),
    Param("min_novelty", 0.15, "how much a view must differ from the kept ones", 0.0, 1.0),
    Param("track_timeout_s", 5.0, "a track unseen this long (sensor time) is reconstructed once more and expired",
          0.1, 3600.0),
    Param("track_ids", [0], "track ids to reconstruct; [0] means all"),
    # reconstruction
    Param("method", "auto", "reconstruction method; auto: the learned model if its weights exist, else support_hull"),
    Param("weights_path", "", "weights of the learned method; empty: the shipped ones"),
    Param("prior_weights_path", "", "weights of the 2D amodal prior the learned method reads; empty: the shipped ones"),
    Param("sampling_steps", 2, "Euler steps of the flow-matching sampler", 1, 100),
    Param("num_samples", 8, "samples drawn per object (where they agree on the surface, confidence is high)", 1, 64),
    Param("num_hypotheses", 0, "the generator's first samples also published as meshes (other plausible completions; "
          "at most num_samples); 0: off", 0, 64),
    Param("local_decoder", True, "refine the surface with the shipped local decoder where it is calibrated with the "
          "weights (the shipped ones are); false: the 64^3 agreement grid alone"),
    Param("backend", "onnxruntime", "inference backend of the learned method (falls back tensorrt -> onnxruntime -> torch)",
          choices=("torch", "onnxruntime", "tensorrt")),
    Param("onnx_dir", "", "where ONNX graphs are exported (per weights hash); empty: ~/.cache/amodalgen3d/onnx"),
    Param("engine_cache_dir", "", "TensorRT engine cache; empty: <onnx_dir>/engines"),
    Param("precision", "fp16", "TensorRT precision inside the engine (inputs and outputs stay fp32)",
          choices=("fp16", "fp32")),
    Param("force_rebuild", False, "rebuild the TensorRT engines even when the cache matches"),
    Param("min_reconstruct_interval_s", 1.0, "a track is reconstructed at most this often", 0.0, 3600.0),
    Param("concurrent_reconstructions", 2, "reconstructions run at once (threads of the reconstruction process: one runs "
          "its networks while another meshes; with torch_threads 0 the cores are shared out between them)", 1, 16),
    Param("registration_budget_s", 3.0, "views without a pose relative to the reference (another tracking segment, or "
          "no tracking) are registered to it for at most this long per result (what was registered is remembered "
          "for the next); 0: no limit",
          0.0, 3600.0),
    Param("reconstruct_timeout_s", 30.0, "a reconstruction running longer marks the track failed", 0.1, 3600.0),
    Param("world_frame", "", "output frame via TF at the image stamp; empty: estimate poses between views"),
    Param("camera_tracking", True, "without TF: track the camera along the stream by RGB-D odometry (needs depth), so "
          "kept views are posed; false (or where tracking was lost): register kept views to each other"),
    Param("tracking_width", 160, "width the stream is tracked at (a window around the labelled objects, scaled down)", 40, 1920),
    Param("output_dir", "", "also save each result as PLY + JSON here (atomically); empty: off"),
    Param("diagnostics_period_s", 1.0, "period of /diagnostics", 0.1, 60.0),
    Param("torch_threads", 0, "CPU threads for the networks; 0: torch's default", 0, 256),
]


@dataclass(frozen=True)
class NodeConfig:
    color_topic: str
    depth_topic: str
    camera_info_topic: str
    labels_topic: str
    input_reliability: str
    input_depth: int
    sync_mode: str
    sync_slop_s: float
    sync_queue_size: int
    max_frame_rate_hz: float
    max_views: int
    max_tracks: int
    min_visible_px: int
    min_novelty: float
    track_timeout_s: float
    track_ids: list
    method: str
    weights_path: str
    prior_weights_path: str
    sampling_steps: int
    num_samples: int
    num_hypotheses: int
    local_decoder: bool
    backend: str
    onnx_dir: str
    engine_cache_dir: str
    precision: str
    force_rebuild: bool
    min_reconstruct_interval_s: float
    concurrent_reconstructions: int
    registration_budget_s: float
    reconstruct_timeout_s: float
    world_frame: str
    camera_tracking: bool
    tracking_width: int
    output_dir: str
    diagnostics_period_s: float
    torch_threads: int


def method_spec(c: NodeConfig) -> MethodSpec:
    """What the reconstruction process loads (worker.py): the method and its options."""
    options = {"steps": c.sampling_steps, "samples": c.num_samples, "hypotheses": c.num_hypotheses,
               "backend": c.backend, "onnx_dir": c.onnx_dir or None, "engine_cache_dir": c.engine_cache_dir or None,
               "precision": c.precision, "force_rebuild": c.force_rebuild}
    if c.prior_weights_path:
        options["prior_weights"] = c.prior_weights_path
    if not c.local_decoder:  # (on: where calibrated with the weights, learned_method's default)
        options["decoder"] = 0
    return MethodSpec(c.method, c.weights_path, options, c.torch_threads, c.concurrent_reconstructions,
                      c.registration_budget_s or None)


def odometry_config(c: NodeConfig) -> OdometryConfig | None:
    """None: the camera is not tracked (no depth, or switched off; the node also leaves it off where TF gives poses)."""
    if not (c.camera_tracking and c.depth_topic):
        return None
    # frames come at most max_frame_rate_hz: a gap of a few of them is not yet a lost track
    gap = max(OdometryConfig.max_gap_s, 5.0 / c.max_frame_rate_hz) if c.max_frame_rate_hz > 0 else OdometryConfig.max_gap_s
    return OdometryConfig(width=c.tracking_width, max_gap_s=gap)


def buffer_config(c: NodeConfig) -> BufferConfig:
    return BufferConfig(c.max_views, c.max_tracks, c.min_visible_px, c.min_novelty, c.track_timeout_s)


class ParamError(ValueError):
    pass


def validate(values: dict[str, Any]) -> NodeConfig:
    """Check types and ranges; one clear message per bad parameter."""
    errors = []
    out = {}
    for p in PARAMS:
        v = values.get(p.name, p.default)
        if isinstance(p.default, bool) or isinstance(p.default, str):
            ok = isinstance(v, type(p.default))
        elif isinstance(p.default, int):
            ok = isinstance(v, int) and not isinstance(v, bool)
        elif isinstance(p.default, float):
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
            v = float(v) if ok else v
        else:
            ok = isinstance(v, (list, tuple))
        if not ok:
            errors.append(f"{p.name}: expected {type(p.default).__name__}, got {v!r}")
            continue
        if p.min is not None and v < p.min or p.max is not None and v > p.max:
            errors.append(f"{p.name}: {v} is outside [{p.min}, {p.max}]")
        if p.choices is not None and v not in p.choices:
            errors.append(f"{p.name}: '{v}' is not one of {', '.join(p.choices)}")
        out[p.name] = list(v) if isinstance(v, tuple) else v
    if errors:
        raise ParamError("; ".join(errors))
    assert {f.name for f in fields(NodeConfig)} == set(out)
    return NodeConfig(**out)


def markdown_table() -> str:
    rows = ["| parameter | default | range | description |", "|---|---|---|---|"]
    for p in PARAMS:
        rng = ", ".join(p.choices) if p.choices else (f"{p.min:g} .. {p.max:g}" if p.min is not None else "")
        rows.append(f"| `{p.name}` | `{p.default!r}` | {rng} | {p.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
