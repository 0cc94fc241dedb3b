"""The reconstruction process: same result as in-process, timeouts kill it, crashes are survived,
bad methods or weights give one clear error at start."""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest

from amodalgen3d_ros.reconstruct import reconstruct
from amodalgen3d_ros.worker import MethodSpec, ReconstructionWorker, WorkerError


@pytest.fixture(scope="module")
def worker():
    w = ReconstructionWorker(MethodSpec("support_hull"))
    yield w
    w.close()


def test_same_mesh_as_in_process(worker, scene0):
    views = scene0.views[:2]
    a = worker.reconstruct(views, scene0.target_id, timeout_s=60)
    b = reconstruct(views, scene0.target_id, "support_hull")
    np.testing.assert_array_equal(a.mesh.vertices, b.mesh.vertices)
    np.testing.assert_array_equal(a.vertex_colors, b.vertex_colors)
    assert a.mesh.is_watertight and a.method == "support_hull" and a.n_views_used == 2


def test_timeout_kills_and_next_call_restarts(worker, scene0):
    pid = worker.pid
    with pytest.raises(TimeoutError):
        worker.reconstruct(scene0.views[:4], scene0.target_id, timeout_s=0.001)
    assert worker.pid is None  # killed, not left running
    rec = worker.reconstruct(scene0.views[:1], scene0.target_id, timeout_s=60)
    assert rec.mesh.is_watertight and worker.pid not in (None, pid)


def test_a_crashed_process_is_an_error_then_restarted(worker, scene0):
    os.kill(worker.pid, signal.SIGKILL)
    worker.proc.wait()
    rec = worker.reconstruct(scene0.views[:1], scene0.target_id, timeout_s=60)  # restarted on the call
    assert rec.mesh.is_watertight
    assert worker.restarts >= 1


def test_failed_reconstruction_is_reported_not_fatal(worker, scene0):
    with pytest.raises(RuntimeError, match="target"):
        worker.reconstruct(scene0.views[:1], 99999, timeout_s=60)  # no such target
    assert worker.reconstruct(scene0.views[:1], scene0.target_id, timeout_s=60).mesh.is_watertight


@pytest.mark.parametrize("spec,match", [(MethodSpec("nonsense"), "unknown method"),
                                        (MethodSpec("amodalgen3d", weights="/nonexistent.safetensors"), "not found")])
def test_bad_method_or_weights_fail_at_start(spec, match):
    with pytest.raises(WorkerError, match=match):
        ReconstructionWorker(spec)


def test_hypotheses_cross_the_process_boundary(scene0):
    """The node publishes the generator's hypotheses from the reconstruction process: they arrive
    as computed in-process (the packed result used to carry the mean mesh only)."""
    spec = MethodSpec("amodalgen3d", options={"steps": 2, "samples": 2, "hypotheses": 2, "backend": "torch"})
    w = ReconstructionWorker(spec)
    try:
        a = w.reconstruct(scene0.views[:2], scene0.target_id, timeout_s=120)
    finally:
        w.close()
    b = reconstruct(scene0.views[:2], scene0.target_id, "amodalgen3d?steps=2&samples=2&hypotheses=2")
    assert len(a.hypotheses) == 2
    for ha, hb in zip(a.hypotheses, b.hypotheses):
        np.testing.assert_allclose(ha.vertices, hb.vertices, atol=1e-6)
        np.testing.assert_array_equal(ha.faces, hb.faces)


def test_a_result_says_where_its_seconds_went(tmp_path):
    """Observation, then the learned method's own split (network, surface), through the worker
    process too (the node publishes them in /diagnostics)."""
    from amodalgen3d_ros.reconstruct import reconstruct
    from amodalgen3d_ros.tools import synth

    scene = synth.render_scene(7, "heldout", 0, synth.SynthConfig(width=160, height=120, n_views=2))
    rec = reconstruct(scene.views, scene.target_id, "amodal_regressor")
    assert set(rec.stage_seconds) == {"observation", "network", "surface"}
    assert all(s > 0 for s in rec.stage_seconds.values()) and sum(rec.stage_seconds.values()) <= rec.seconds
    w = ReconstructionWorker(MethodSpec("support_hull"))
    try:
        assert set(w.reconstruct(scene.views, scene.target_id, 60).stage_seconds) == {"observation", "method"}
    finally:
        w.close()


def test_concurrent_calls_run_at_once_and_each_gets_its_own_result(scene0):
    """The node's worker threads share one process running two reconstructions at once: each call
    gets the mesh it would get alone (in-process), with its own split of seconds."""
    spec = MethodSpec("amodalgen3d", options={"steps": 2, "samples": 2, "backend": "torch"}, concurrent=2)
    jobs = [scene0.views[:1], scene0.views[:3], scene0.views[1:3], scene0.views[:2]]
    out: dict[int, object] = {}
    w = ReconstructionWorker(spec)
    try:
        def call(i):
            out[i] = w.reconstruct(jobs[i], scene0.target_id, timeout_s=120)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(jobs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        w.close()
    assert sorted(out) == list(range(len(jobs)))
    for i, views in enumerate(jobs):
        b = reconstruct(views, scene0.target_id, "amodalgen3d?steps=2&samples=2")
        np.testing.assert_allclose(out[i].mesh.vertices, b.mesh.vertices, atol=1e-6)
        assert out[i].n_views_used == len(views)
        assert set(out[i].stage_seconds) == {"observation", "network", "surface"}


def test_a_timeout_ends_the_calls_beside_it_with_a_reason(scene0):
    w = ReconstructionWorker(MethodSpec("support_hull", concurrent=2))
    errors: list[Exception] = []

    def slow_beside():
        try:
            w.reconstruct(scene0.views[:4], scene0.target_id, timeout_s=60)
        except Exception as e:
            errors.append(e)

    try:
        t = threading.Thread(target=slow_beside)
        t.start()
        while not w._pending and t.is_alive():  # the other call is in the child before this one times out
            threading.Event().wait(0.001)
        with pytest.raises(TimeoutError):
            w.reconstruct(scene0.views[:4], scene0.target_id, timeout_s=0.001)
        t.join()
        assert len(errors) == 1 and isinstance(errors[0], WorkerError) and "another reconstruction" in str(errors[0])
        assert w.reconstruct(scene0.views[:1], scene0.target_id, timeout_s=60).mesh.is_watertight  # started again
    finally:
        w.close()
