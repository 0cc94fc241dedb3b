"""Inference backends behind one interface: torch (CPU or CUDA), onnxruntime (CPU, CUDA or
TensorRT execution providers, whichever are installed) and native TensorRT.

The generator is exported as two ONNX graphs, with dynamic samples (batch) and views:
  encoder.onnx   geo (B, C_geo, R, R, R), views (B, V, C_img, c, c)  -> img (B, V, N, D), geo_tok (B, T', D)
  step.onnx      z (B, 1, R, R, R), t (B,), geo, tau (B, V), valid (B, V), img, geo_tok -> velocity (B, 1, R, R, R)
and the 2D amodal prior as one, with a dynamic number of views:
  prior.onnx     x (V, 8, 64, 64) -> out (V, 2, 64, 64)
Inputs and outputs stay fp32 in every backend (fp16 only inside a TensorRT engine).

TensorRT engines are built from the ONNX once and cached under a directory; the cache key is the
TensorRT version, the GPU name, the precision and the ONNX file's SHA-256, so an engine is
rebuilt when any of them changes, when the cached file is corrupt, or on force_rebuild.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import torch

from .amodal_prior import PRIOR_CHANNELS, torch_runner
from .model import AmodalGen3D
from .weights_io import file_sha256, write_atomic

log = logging.getLogger("amodalgen3d.backends")
ENCODER_INPUTS = ["geo", "views"]
STEP_INPUTS = ["z", "t", "geo", "tau", "valid", "img", "geo_tok"]
# The opset per runtime: at 20 GELU is one ONNX op, which onnxruntime runs as one kernel (at 17 it
# is eight elementwise ops over the MLP's widest tensor); JetPack 6's TensorRT 8.6 parses up to 17.
ORT_OPSET = 20
TRT_OPSET = 17


class TorchBackend:
    name = "torch"

    def __init__(self, model: AmodalGen3D, device: str = "cpu"):
        self.model = model.to(device).eval()
        self.device = device

    def encode(self, geo: torch.Tensor, views: torch.Tensor):
        with torch.inference_mode():
            return self.model.encode_conditions(geo.to(self.device), views.to(self.device))

    def velocity(self, z, t, geo, tau, valid, cond):
        with torch.inference_mode():
            d = self.device
            return self.model(z.to(d), t.to(d), geo.to(d), None, tau.to(d), valid.to(d), cond=cond).cpu()


class _StepModule(torch.nn.Module):
    def __init__(self, model: AmodalGen3D):
        super().__init__()
        self.model = model

    def forward(self, z, t, geo, tau, valid, img, geo_tok):
        return self.model(z, t, geo, None, tau, valid, cond=(img, geo_tok))


class _EncoderModule(torch.nn.Module):
    def __init__(self, model: AmodalGen3D):
        super().__init__()
        self.model = model

    def forward(self, geo, views):
        return self.model.encode_conditions(geo, views)


def example_inputs(model: AmodalGen3D, batch: int = 2, views: int = 2) -> tuple[tuple, tuple]:
    c = model.cfg
    R = c.res
    geo = torch.rand(batch, c.geo_channels, R, R, R)
    vws = torch.rand(batch, views, c.img_channels, c.crop, c.crop)
    with torch.no_grad():
        img, geo_tok = model.encode_conditions(geo, vws)
    step = (torch.randn(batch, 1, R, R, R), torch.rand(batch), geo, torch.rand(batch, views),
            torch.ones(batch, views, dtype=torch.bool), img, geo_tok)
    return (geo, vws), step


def export_onnx(model: AmodalGen3D, out_dir: str | Path, opset: int = TRT_OPSET) -> tuple[Path, Path]:
    """encoder.onnx and step.onnx with dynamic samples (dim 0) and views."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    enc_in, step_in = example_inputs(model)
    enc_path, step_path = out / "encoder.onnx", out / "step.onnx"
    with torch.no_grad():
        torch.onnx.export(_EncoderModule(model), enc_in, str(enc_path), input_names=ENCODER_INPUTS,
                          output_names=["img", "geo_tok"], opset_version=opset, dynamo=False,
                          dynamic_axes={"geo": {0: "B"}, "views": {0: "B", 1: "V"}, "img": {0: "B", 1: "V"},
                                        "geo_tok": {0: "B"}})
        torch.onnx.export(_StepModule(model), step_in, str(step_path), input_names=STEP_INPUTS,
                          output_names=["velocity"], opset_version=opset, dynamo=False,
                          dynamic_axes={"z": {0: "B"}, "t": {0: "B"}, "geo": {0: "B"}, "tau": {0: "B", 1: "V"},
                                        "valid": {0: "B", 1: "V"}, "img": {0: "B", 1: "V"}, "geo_tok": {0: "B"},
                                        "velocity": {0: "B"}})
    return enc_path, step_path


def session_options(threads: int = 0):
    """onnxruntime session options. The thread pool stops spinning when a run returns: between and
    after runs the numpy work of the pipeline needs the cores."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        so.intra_op_num_threads = threads
    so.add_session_config_entry("session.force_spinning_stop", "1")
    # one CPU arena for every session of the process, grown by what is asked, not to the next
    # power of two: with the child's two glibc heaps (worker.py) a lower peak at the same speed
    # (docs/ros.md)
    so.add_session_config_entry("session.use_env_allocators", "1")
    _shared_cpu_arena(ort)
    return so


_ARENA_LOCK = threading.Lock()
_ARENA_REGISTERED = False


def _shared_cpu_arena(ort) -> None:
    global _ARENA_REGISTERED
    with _ARENA_LOCK:
        if not _ARENA_REGISTERED:
            info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, 1, -1, -1))  # 1: kSameAsRequested
            _ARENA_REGISTERED = True


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, onnx_dir: str | Path, providers: list[str] | None = None, threads: int = 0):
        import onnxruntime as ort

        available = ort.get_available_providers()
        wanted = providers or ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
        chosen = [p for p in wanted if p in available] or ["CPUExecutionProvider"]
        d = Path(onnx_dir)
        self.enc = ort.InferenceSession(str(d / "encoder.onnx"), session_options(threads), providers=chosen)
        self.step = ort.InferenceSession(str(d / "step.onnx"), session_options(threads), providers=chosen)
        self.providers = self.step.get_providers()
        log.info("onnxruntime providers: %s", ", ".join(self.providers))

    def encode(self, geo, views):
        img, geo_tok = self.encode_numpy(geo.numpy(), views.numpy())
        return torch.from_numpy(img), torch.from_numpy(geo_tok)

    def velocity(self, z, t, geo, tau, valid, cond):
        img, geo_tok = cond
        return torch.from_numpy(self.velocity_numpy(z.numpy(), t.numpy(), geo.numpy(), tau.numpy(), valid.numpy(),
                                                    (img.numpy(), geo_tok.numpy())))

    # numpy in and out: the sampler's loop stays free of torch ops (see model.sample)
    def encode_numpy(self, geo: np.ndarray, views: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        img, geo_tok = self.enc.run(None, {"geo": geo, "views": views})
        return img, geo_tok

    def velocity_numpy(self, z, t, geo, tau, valid, cond) -> np.ndarray:
        img, geo_tok = cond
        feeds = {"z": z, "t": t.astype(np.float32), "geo": geo, "tau": tau, "valid": valid, "img": img, "geo_tok": geo_tok}
        return self.step.run(None, feeds)[0]


# --------------------------------------------------------------------------------------------
# TensorRT engine cache
# --------------------------------------------------------------------------------------------

def engine_cache_key(onnx_path: str | Path, trt_version: str, gpu_name: str, precision: str) -> str:
    """The engine is valid only for this ONNX file, TensorRT version, GPU and precision."""
    if precision not in ("fp32", "fp16"):
        raise ValueError(f"precision must be fp32 or fp16, got {precision}")
    blob = json.dumps({"onnx_sha256": file_sha256(onnx_path), "tensorrt": trt_version, "gpu": gpu_name,
                       "precision": precision}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def cached_engine(onnx_path: str | Path, cache_dir: str | Path, trt_version: str, gpu_name: str, precision: str,
                  build, force_rebuild: bool = False) -> tuple[bytes, bool]:
    """(serialized engine, built_now). ``build(onnx_path, precision) -> bytes`` is called on a miss,
    on a corrupt (empty or unreadable) cache file, or when forced; the new engine is written
    atomically beside its key file."""
    key = engine_cache_key(onnx_path, trt_version, gpu_name, precision)
    path = Path(cache_dir) / f"{Path(onnx_path).stem}-{key}.engine"
    meta = path.with_suffix(".json")
    if not force_rebuild and path.is_file() and meta.is_file():
        try:
            data = path.read_bytes()
            info = json.loads(meta.read_text())
            if data and info.get("key") == key and info.get("bytes") == len(data):
                log.info("engine cache hit: %s", path)
                return data, False
            log.warning("engine cache file %s is corrupt: rebuilding", path)
        except (OSError, json.JSONDecodeError):
            log.warning("engine cache file %s is unreadable: rebuilding", path)
    log.info("engine cache miss (%s): building from %s", "forced" if force_rebuild else "new key", onnx_path)
    t0 = time.perf_counter()
    data = build(onnx_path, precision)
    write_atomic(path, data)
    write_atomic(meta, json.dumps({"key": key, "bytes": len(data), "onnx": str(onnx_path), "tensorrt": trt_version,
                                   "gpu": gpu_name, "precision": precision,
                                   "build_seconds": round(time.perf_counter() - t0, 2)}).encode())
    return data, True


def build_trt_engine(onnx_path: str | Path, precision: str, max_samples: int = 8, max_views: int = 8) -> bytes:
    """Native TensorRT build (GPU machines only); fp16 inside, fp32 at the inputs and outputs."""
    import tensorrt as trt  # noqa: F401  (only where TensorRT is installed)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        raise RuntimeError("; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)))
    config = builder.create_builder_config()
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        inp = network.get_input(i)
        shape = list(inp.shape)
        lo = [1 if s == -1 else s for s in shape]
        hi = [max_samples if (k == 0 and s == -1) else (max_views if s == -1 else s) for k, s in enumerate(shape)]
        opt = [4 if (k == 0 and s == -1) else (4 if s == -1 else s) for k, s in enumerate(shape)]
        profile.set_shape(inp.name, lo, opt, hi)
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise RuntimeError(f"TensorRT could not build an engine from {onnx_path}")
    return bytes(engine)


class TensorRTBackend:
    """Native TensorRT engines (GPU only), built once per cache key; torch CUDA tensors carry the
    fp32 inputs and outputs."""

    name = "tensorrt"

    def __init__(self, onnx_dir: str | Path, cache_dir: str | Path, precision: str = "fp16", force_rebuild: bool = False):
        import tensorrt as trt

        if not torch.cuda.is_available():
            raise RuntimeError("TensorRT needs a CUDA device")
        gpu = torch.cuda.get_device_name(0)
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engines = {}
        for part in ("encoder", "step"):
            data, _ = cached_engine(Path(onnx_dir) / f"{part}.onnx", cache_dir, trt.__version__, gpu, precision,
                                    build_trt_engine, force_rebuild)
            engine = self.runtime.deserialize_cuda_engine(data)
            self.engines[part] = (engine, engine.create_execution_context())
        self._lock = threading.Lock()  # an execution context runs one inference at a time

    def _run(self, part: str, feeds: dict[str, torch.Tensor], out_names: list[str]) -> list[torch.Tensor]:
        with self._lock:
            return self._run_locked(part, feeds, out_names)

    def _run_locked(self, part: str, feeds: dict[str, torch.Tensor], out_names: list[str]) -> list[torch.Tensor]:
        engine, ctx = self.engines[part]
        stream = torch.cuda.current_stream()
        keep = {}
        for name, t in feeds.items():
            t = t.cuda().contiguous()
            keep[name] = t
            ctx.set_input_shape(name, tuple(t.shape))
            ctx.set_tensor_address(name, t.data_ptr())
        outs = []
        for name in out_names:
            o = torch.empty(tuple(ctx.get_tensor_shape(name)), dtype=torch.float32, device="cuda")
            ctx.set_tensor_address(name, o.data_ptr())
            outs.append(o)
        ctx.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        return [o.cpu() for o in outs]

    def encode(self, geo, views):
        img, geo_tok = self._run("encoder", {"geo": geo, "views": views}, ["img", "geo_tok"])
        return img, geo_tok

    def velocity(self, z, t, geo, tau, valid, cond):
        img, geo_tok = cond
        return self._run("step", {"z": z, "t": t, "geo": geo, "tau": tau, "valid": valid, "img": img,
                                  "geo_tok": geo_tok}, ["velocity"])[0]


BACKENDS = ("torch", "onnxruntime", "tensorrt")


GRAPH_VERSION = 2  # 2: View-Wise Cross Attention projects queries once and outputs after fusion


def onnx_files(model: AmodalGen3D, onnx_dir: str | Path, weights_sha: str, opset: int = TRT_OPSET) -> Path:
    """The model's ONNX graphs under onnx_dir/<weights hash>_g<graph version>[_o<opset>]/, exported
    once (a change to the model's code that changes the graph bumps GRAPH_VERSION: exported again)."""
    d = Path(onnx_dir) / (f"{weights_sha[:16]}_g{GRAPH_VERSION}" + ("" if opset == TRT_OPSET else f"_o{opset}"))

    def complete() -> bool:
        return (d / "encoder.onnx").is_file() and (d / "step.onnx").is_file()

    if not complete():
        # exported beside the final name and renamed into place: a process killed mid-export, or two
        # processes exporting at once, never leave a half-written graph under the name that is read
        tmp = d.parent / f".{d.name}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            export_onnx(model, tmp, opset)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if d.exists() and not complete():
            shutil.rmtree(d, ignore_errors=True)  # left incomplete by an older version's export
        try:
            os.replace(tmp, d)
        except OSError:  # another process renamed its export first: the same graphs
            shutil.rmtree(tmp, ignore_errors=True)
    return d


PRIOR_GRAPH_VERSION = 3  # 2: depth as a correction to the nearest visible depth (8 inputs); 3: retrained


def prior_onnx(net, onnx_dir: str | Path, weights_sha: str, opset: int = 17) -> Path:
    """The 2D amodal prior's graph under onnx_dir/<weights hash>_p<version>/prior.onnx, exported once."""
    path = Path(onnx_dir) / f"{weights_sha[:16]}_p{PRIOR_GRAPH_VERSION}" / "prior.onnx"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        x = torch.rand(2, len(PRIOR_CHANNELS), net.cfg.crop, net.cfg.crop)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.onnx")  # one per process, renamed into place
        with torch.no_grad():
            torch.onnx.export(net.eval(), (x,), str(tmp), input_names=["x"], output_names=["out"], opset_version=opset,
                              dynamo=False, dynamic_axes={"x": {0: "V"}, "out": {0: "V"}})
        tmp.replace(path)
    return path


def make_prior_runner(name: str, net, onnx_dir: str | Path | None = None, threads: int = 0,
                      weights_sha: str = "unhashed"):
    """The 2D amodal prior as numpy (V, 8, C, C) -> (V, 2, C, C) on the backend ``name``: torch,
    or onnxruntime (also for tensorrt: onnxruntime's TensorRT provider where installed; the prior
    is a few milliseconds a view and not worth an engine of its own)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend '{name}' ({', '.join(BACKENDS)})")
    if name != "torch":
        try:
            import onnxruntime as ort

            path = prior_onnx(net, Path(onnx_dir or Path.home() / ".cache" / "amodalgen3d" / "onnx"), weights_sha)
            wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
            providers = [p for p in wanted if p in ort.get_available_providers()]
            sess = ort.InferenceSession(str(path), session_options(threads), providers=providers)
            return lambda x: sess.run(None, {"x": np.ascontiguousarray(x, np.float32)})[0]
        except ImportError as e:
            log.warning("onnxruntime unavailable (%s): the amodal prior runs on torch", e)
    return torch_runner(net)


def make_backend(name: str, model: AmodalGen3D, onnx_dir: str | Path | None = None, threads: int = 0,
                 weights_sha: str = "unhashed", cache_dir: str | Path | None = None, precision: str = "fp16",
                 force_rebuild: bool = False):
    """torch | onnxruntime | tensorrt. A backend that cannot run here falls back to the next
    (tensorrt -> onnxruntime -> torch) with one clear log line."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend '{name}' ({', '.join(BACKENDS)})")
    onnx_root = Path(onnx_dir or Path.home() / ".cache" / "amodalgen3d" / "onnx")
    if name == "tensorrt":
        try:
            d = onnx_files(model, onnx_root, weights_sha)
            return TensorRTBackend(d, cache_dir or onnx_root / "engines", precision, force_rebuild)
        except (ImportError, RuntimeError) as e:
            log.warning("TensorRT unavailable (%s): falling back to onnxruntime", e)
            name = "onnxruntime"
    if name == "onnxruntime":
        try:
            return OnnxRuntimeBackend(onnx_files(model, onnx_root, weights_sha, ORT_OPSET), threads=threads)
        except ImportError as e:
            log.warning("onnxruntime unavailable (%s): falling back to torch", e)
    return TorchBackend(model, "cuda" if torch.cuda.is_available() else "cpu")
