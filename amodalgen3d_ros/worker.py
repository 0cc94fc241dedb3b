"""Reconstruction in a child process, for callers that must stay responsive (the ROS node).

Why a process and not a thread: in one process the node's input callbacks and the many short
torch/Open3D calls of the reconstruction convoy on one GIL (a reconstruction took over ten times as
long at 30 Hz input; docs/ros.md). A child process runs at its own speed; a reconstruction past
its timeout is ended by killing the child (a thread cannot be stopped); a crash in native code
takes down the child, not the caller; and freeing the model is ending the child.

The child is `python -m amodalgen3d_ros.worker FD`, talking over a socket pair with
multiprocessing's Connection (pickled views in, arrays out, between our own two processes only;
weights are still read from safetensors by the child). It runs up to ``MethodSpec.concurrent``
reconstructions at once, on threads sharing the one loaded method: while one runs its networks,
another does the numpy half of its pipeline, so two cores finish more objects per second than one
reconstruction at a time on both (docs/ros.md), at the memory of one process.

    w = ReconstructionWorker(MethodSpec("amodalgen3d"))
    rec = w.reconstruct(views, track_id, timeout_s=30)
    w.close()
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import trimesh

from .reconstruct import Reconstruction, reconstruct, resolve_method


class WorkerError(RuntimeError):
    """The child could not start (bad method or weights) or died during a reconstruction."""


@dataclass(frozen=True)
class MethodSpec:
    """What the child loads: a method by name, and the learned method's options."""

    name: str = "auto"
    weights: str = ""
    options: dict = field(default_factory=dict)  # steps, samples, hypotheses, backend, onnx_dir, ...
    threads: int = 0  # torch threads in the child; 0: torch's default
    concurrent: int = 1  # reconstructions run at once (threads in the child)
    registration_budget_s: float | None = None  # geometry.resolve_poses's budget; None: none


def load_method(spec: MethodSpec):
    """(name, callable), loaded once, in the child: learned methods read their weights here. With
    several reconstructions at once and no thread count given, the cores are shared out between
    them (each one's networks on cores / concurrent threads)."""
    from .learned import DEFAULT_WEIGHTS, learned_method  # torch: in the child only

    name = resolve_method("auto")[0] if spec.name == "auto" else spec.name
    if name not in DEFAULT_WEIGHTS:
        return resolve_method(name)
    options = dict(spec.options)
    if spec.concurrent > 1 and not options.get("threads"):
        options["threads"] = max(1, (os.cpu_count() or 1) // spec.concurrent)
    return name, learned_method(name, spec.weights or None, **options)


def _pack(rec) -> dict:
    d = {k: getattr(rec, k) for k in ("frame", "track_id", "method", "n_views_used", "visible_fraction", "seconds",
                                      "vertex_confidence", "vertex_colors", "registration", "stage_seconds")}
    d["vertices"] = np.asarray(rec.mesh.vertices, np.float64)
    d["faces"] = np.asarray(rec.mesh.faces, np.int64)
    d["hypotheses"] = [(np.asarray(h.vertices, np.float64), np.asarray(h.faces, np.int64)) for h in rec.hypotheses]
    return d


def _unpack(d: dict):
    mesh = trimesh.Trimesh(d.pop("vertices"), d.pop("faces"), process=False)
    d["hypotheses"] = [trimesh.Trimesh(v, f, process=False) for v, f in d.get("hypotheses", [])]
    colors = d["vertex_colors"]
    mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=np.c_[colors, np.full(len(colors), 255, np.uint8)])
    return Reconstruction(mesh=mesh, **d)


def serve(conn: Connection) -> None:
    """The child's loop: a spec, then (job id, views, track_id, seed) jobs until None or the parent
    leaves; each job's result goes back with its id as soon as it is done."""
    try:
        spec = MethodSpec(**conn.recv())
        if spec.threads:
            import torch  # the child's own thread count; the parent never loads torch

            torch.set_num_threads(spec.threads)
        method = load_method(spec)
        backend = getattr(getattr(method[1], "backend", None), "name", "")
        conn.send(("ready", method[0], backend))
    except EOFError:
        return
    except Exception as e:  # missing or corrupt weights, unknown method: one clear line to the parent
        conn.send(("error", f"{e.__class__.__name__}: {e}", ""))
        return
    send_lock = threading.Lock()

    def run(job_id: int, views: list, track_id: int, seed: int) -> None:
        reply: tuple
        try:
            rec = reconstruct(views, track_id, method, seed=seed, registration_budget_s=spec.registration_budget_s)
            reply = ("ok", job_id, _pack(rec))
        except Exception as e:  # a failed reconstruction is a result: the caller marks the track
            reply = ("error", job_id, f"{e.__class__.__name__}: {e}")
        with send_lock:
            try:
                conn.send(reply)
            except OSError:  # the parent is gone
                pass

    pool = ThreadPoolExecutor(max(1, spec.concurrent), thread_name_prefix="reconstruction")
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            break
        if job is None:
            break
        pool.submit(run, *job)
    pool.shutdown(wait=False, cancel_futures=True)


class ReconstructionWorker:
    """One child process holding one loaded method. Thread-safe: calls from several threads run
    at once in the child (up to spec.concurrent; more wait there). A child killed on timeout or
    dead of a crash is started again on the next call; the calls it was running fail with
    WorkerError."""

    def __init__(self, spec: MethodSpec, start_timeout_s: float = 300.0):
        self.spec = spec
        self.start_timeout_s = start_timeout_s
        self.lock = threading.Lock()  # starting, ending and sending to the child
        self.proc: subprocess.Popen | None = None
        self.conn: Connection | None = None
        self.method_name = ""
        self.backend_name = ""
        self.restarts = 0
        self._next_job = 0
        self._pending: dict[int, Future] = {}  # job id -> its caller's future, for the current child
        self._why_ended = ""  # why the current child was ended by us (its running calls say so)
        self._start()

    def _start(self) -> None:
        a, b = socket.socketpair()
        # glibc gives threads heaps of their own, which hold freed memory apart: two heaps, with
        # onnxruntime's shared arena (backends.py), keep the child's peak lower (docs/ros.md)
        env = {"MALLOC_ARENA_MAX": "2", **os.environ}
        self.proc = subprocess.Popen([sys.executable, "-m", "amodalgen3d_ros.worker", str(b.fileno())],
                                     pass_fds=(b.fileno(),), stdin=subprocess.DEVNULL, env=env)
        b.close()
        self.conn = Connection(a.detach())
        self.conn.send(asdict(self.spec))
        if not self.conn.poll(self.start_timeout_s):
            self._kill()
            raise WorkerError(f"the reconstruction process did not start within {self.start_timeout_s:.0f} s")
        try:
            status, name, backend = self.conn.recv()
        except EOFError:
            code = self.proc.wait(5)
            self._kill()
            raise WorkerError(f"the reconstruction process exited at start-up (code {code})") from None
        if status != "ready":
            self._kill()
            raise WorkerError(name)
        self.method_name, self.backend_name = name, backend
        self._pending, self._why_ended = {}, ""
        threading.Thread(target=self._read, args=(self.conn, self._pending), name="reconstruction_results",
                         daemon=True).start()

    def _read(self, conn: Connection, pending: dict[int, Future]) -> None:
        """Results of one child, to the calls waiting for them, until it ends; then every call
        still waiting on it fails."""
        while True:
            try:
                status, job_id, payload = conn.recv()
            except (EOFError, OSError, TypeError, ValueError):  # ended, killed, or closed under us
                break
            with self.lock:
                fut = pending.pop(job_id, None)
            if fut is not None:
                fut.set_result((status, payload))
        with self.lock:
            left, why = list(pending.values()), self._why_ended or "the reconstruction process died"
            pending.clear()
        for fut in left:
            fut.set_exception(WorkerError(why))

    def _kill(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def reconstruct(self, views: list, track_id: int, timeout_s: float, seed: int = 0):
        """A Reconstruction; TimeoutError past timeout_s (the child is killed), WorkerError if the
        child died (or was killed for another call's timeout), RuntimeError with the child's
        message if the reconstruction failed."""
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self._kill()
                self.restarts += 1
                self._start()
            assert self.conn is not None
            conn, fut = self.conn, Future[tuple[str, Any]]()
            job_id, self._next_job = self._next_job, self._next_job + 1
            self._pending[job_id] = fut
            try:
                conn.send((job_id, views, track_id, seed))
            except OSError:
                self._pending.pop(job_id, None)
                self._kill()
                raise WorkerError("the reconstruction process died") from None
        try:
            status, payload = fut.result(timeout_s)
        except FutureTimeout:
            with self.lock:
                if self.conn is conn:  # not already ended for another call
                    self._why_ended = ("the reconstruction process was ended: another reconstruction took longer "
                                       f"than {timeout_s:g} s")
                    self._kill()  # started again on the next call
            raise TimeoutError(f"took longer than {timeout_s:g} s") from None
        if status != "ok":
            raise RuntimeError(payload)
        return _unpack(payload)

    def close(self) -> None:
        with self.lock:
            if self.conn is not None:
                try:
                    self.conn.send(None)
                except OSError:
                    pass
            if self.proc is not None:
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
            self._kill()


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is for the parent, which ends us in order
    # the caller's input comes first: a node whose frames wait behind reconstructions drops them
    os.nice(5)
    serve(Connection(int(sys.argv[1])))
