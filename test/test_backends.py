"""ONNX export and onnxruntime-versus-torch parity; backend fallback; TensorRT cache rules."""

from __future__ import annotations

import pytest
import torch

from amodalgen3d_ros import backends as B
from amodalgen3d_ros import model as M

pytest.importorskip("onnxruntime")

CFG = M.ModelConfig(width=32, depth=2, heads=2, res=16, patch=4, crop=16, max_views=4)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    m = M.AmodalGen3D(CFG).eval()
    for p in m.parameters():  # non-zero everywhere, so parity is tested on real numbers
        torch.nn.init.normal_(p, std=0.05)
    d = tmp_path_factory.mktemp("onnx")
    B.export_onnx(m, d)
    return m, d


@pytest.mark.parametrize("samples, views", [(1, 1), (3, 4)])
def test_onnxruntime_matches_torch(exported, samples, views):
    m, d = exported
    ort_b, torch_b = B.OnnxRuntimeBackend(d), B.TorchBackend(m)
    enc_in, step_in = B.example_inputs(m, batch=samples, views=views)
    c_t, c_o = torch_b.encode(*enc_in), ort_b.encode(*enc_in)
    for a, b in zip(c_t, c_o):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
    z, t, geo, tau, valid = step_in[:5]
    v_t = torch_b.velocity(z, t, geo, tau, valid, c_t)
    v_o = ort_b.velocity(z, t, geo, tau, valid, c_o)
    torch.testing.assert_close(v_o, v_t, atol=1e-4, rtol=1e-4)


def test_sampling_through_either_backend_agrees(exported):
    m, d = exported
    _, step_in = B.example_inputs(m, batch=1, views=2)
    geo, tau, valid = step_in[2], step_in[3], step_in[4]
    views = torch.rand(1, 2, CFG.img_channels, CFG.crop, CFG.crop)
    a = M.sample(B.TorchBackend(m), geo, views, tau, valid, steps=4, samples=2, seed=3)
    b = M.sample(B.OnnxRuntimeBackend(d), geo, views, tau, valid, steps=4, samples=2, seed=3)
    torch.testing.assert_close(b, a, atol=1e-3, rtol=1e-3)
    assert ((a > 0) != (b > 0)).float().mean() < 0.001  # the same occupancy, voxel for voxel


def test_samples_in_smaller_calls_are_the_same_samples(exported):
    """The node runs the samples a few per network call (memory): same noise, same samples."""
    m, d = exported
    _, step_in = B.example_inputs(m, batch=1, views=2)
    geo, tau, valid = step_in[2], step_in[3], step_in[4]
    views = torch.rand(1, 2, CFG.img_channels, CFG.crop, CFG.crop)
    ort_b = B.OnnxRuntimeBackend(d)
    whole = M.sample(ort_b, geo, views, tau, valid, steps=2, samples=5, seed=4)
    for per_call in (1, 2, 3):
        part = M.sample(ort_b, geo, views, tau, valid, steps=2, samples=5, seed=4, per_call=per_call)
        torch.testing.assert_close(part, whole, atol=1e-4, rtol=1e-4)


def test_x0_generator_exports_with_its_velocity(tmp_path):
    """The x0-predicting generator's graph holds the conversion to a velocity: parity with torch."""
    torch.manual_seed(1)
    m = M.AmodalGen3D(M.ModelConfig(**{**CFG.__dict__, "predict": "x0"})).eval()
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.05)
    B.export_onnx(m, tmp_path)
    _, step_in = B.example_inputs(m, batch=2, views=2)
    geo, tau, valid = step_in[2], step_in[3], step_in[4]
    views = torch.rand(1, 2, CFG.img_channels, CFG.crop, CFG.crop)
    a = M.sample(B.TorchBackend(m), geo[:1], views, tau[:1], valid[:1], steps=4, samples=2, seed=3)
    b = M.sample(B.OnnxRuntimeBackend(tmp_path), geo[:1], views, tau[:1], valid[:1], steps=4, samples=2, seed=3)
    torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)


def test_export_killed_midway_leaves_nothing_to_read(exported, tmp_path, monkeypatch):
    """Bug: a process stopped between encoder.onnx and step.onnx left a half-written graph under
    the name the next start reads. Exports now go to a temporary directory renamed into place."""
    m = exported[0]
    real = torch.onnx.export
    calls = []

    def dies_on_the_step(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # stands for the process being stopped during the second export
        return real(*a, **k)

    monkeypatch.setattr(torch.onnx, "export", dies_on_the_step)
    with pytest.raises(KeyboardInterrupt):
        B.onnx_files(m, tmp_path, "feedbeef" * 2)
    monkeypatch.setattr(torch.onnx, "export", real)
    final = tmp_path / f"{'feedbeef' * 2}_g{B.GRAPH_VERSION}"
    assert not final.exists() and not list(tmp_path.iterdir())
    # an incomplete directory left by an older version is replaced by a complete export
    final.mkdir()
    (final / "encoder.onnx").write_bytes(b"half")
    d = B.onnx_files(m, tmp_path, "feedbeef" * 2)
    assert d == final and (d / "step.onnx").is_file() and (d / "encoder.onnx").stat().st_size > 100
    B.OnnxRuntimeBackend(d)  # loads
    assert [p.name for p in tmp_path.iterdir()] == [final.name]  # no temporary left behind
    # incomplete the other way round (step without encoder): replaced too, not returned as is
    (final / "encoder.onnx").unlink()
    d = B.onnx_files(m, tmp_path, "feedbeef" * 2)
    assert (d / "encoder.onnx").is_file() and (d / "step.onnx").is_file()


def test_unknown_backend_is_refused(exported):
    with pytest.raises(ValueError, match="unknown backend"):
        B.make_backend("openvino", exported[0])


def test_tensorrt_falls_back_with_a_log_line(exported, tmp_path, caplog):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the real TensorRT path runs instead")
    with caplog.at_level("WARNING"):
        b = B.make_backend("tensorrt", exported[0], tmp_path / "onnx", weights_sha="abc123")
    assert b.name == "onnxruntime" and "falling back to onnxruntime" in caplog.text
    assert (tmp_path / "onnx" / f"abc123_g{B.GRAPH_VERSION}" / "step.onnx").is_file()  # once per weights and graph


def test_engine_cache_hits_misses_and_rebuilds(tmp_path, exported):
    _, d = exported
    built = []

    def build(onnx, precision):
        built.append(precision)
        return b"engine-" + precision.encode()

    args = (d / "step.onnx", tmp_path / "cache", "10.3.0", "Orin", "fp16")
    data, new = B.cached_engine(*args, build)
    assert new and data == b"engine-fp16"
    assert B.cached_engine(*args, build) == (b"engine-fp16", False)  # hit
    assert B.cached_engine(d / "step.onnx", tmp_path / "cache", "10.4.0", "Orin", "fp16", build)[1]  # new TRT
    assert B.cached_engine(d / "step.onnx", tmp_path / "cache", "10.3.0", "RTX 4090", "fp16", build)[1]  # new GPU
    assert B.cached_engine(d / "step.onnx", tmp_path / "cache", "10.3.0", "Orin", "fp32", build)[1]  # precision
    eng = tmp_path / "cache" / f"step-{B.engine_cache_key(d / 'step.onnx', '10.3.0', 'Orin', 'fp16')}.engine"
    eng.write_bytes(b"")  # corrupt
    assert B.cached_engine(*args, build)[1]
    assert B.cached_engine(*args, build, force_rebuild=True)[1]
    with pytest.raises(ValueError, match="precision"):
        B.engine_cache_key(d / "step.onnx", "10", "x", "int8")


def test_each_runtime_gets_its_opset(exported, tmp_path):
    """onnxruntime reads opset 20 (GELU as one op), TensorRT opset 17 (JetPack 6's parser)."""
    import onnx

    m = exported[0]
    d_trt = B.onnx_files(m, tmp_path, "abc123")
    d_ort = B.onnx_files(m, tmp_path, "abc123", B.ORT_OPSET)
    assert d_trt != d_ort
    g_trt, g_ort = (onnx.load(str(d / "step.onnx")) for d in (d_trt, d_ort))
    assert g_trt.opset_import[0].version == 17 and g_ort.opset_import[0].version == 20
    assert "Gelu" in {n.op_type for n in g_ort.graph.node}
    assert "Gelu" not in {n.op_type for n in g_trt.graph.node}


def test_conditions_encoded_once_match_per_sample_encoding(exported):
    """The sampler encodes the views once and repeats them for the K samples: the same samples as
    encoding K copies."""
    m, _ = exported
    _, step_in = B.example_inputs(m, batch=1, views=3)
    geo, tau, valid = step_in[2], step_in[3], step_in[4]
    views = torch.rand(1, 3, CFG.img_channels, CFG.crop, CFG.crop)
    K, steps = 3, 4
    got = M.sample(B.TorchBackend(m), geo, views, tau, valid, steps=steps, samples=K, seed=5)
    z = torch.randn(K, 1, *geo.shape[2:], generator=torch.Generator().manual_seed(5))
    rep = [a.expand(K, *a.shape[1:]) for a in (geo, views, tau, valid)]
    with torch.no_grad():
        cond = m.encode_conditions(rep[0], rep[1])
        ts = torch.linspace(1, 0, steps + 1)
        for i in range(steps):
            z = z + (ts[i + 1] - ts[i]) * m(z, ts[i].expand(K), rep[0], None, rep[2], rep[3], cond=cond)
    torch.testing.assert_close(got, z[:, 0], atol=1e-5, rtol=1e-5)
