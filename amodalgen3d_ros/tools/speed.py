"""Seconds per object of the learned methods on this CPU, by views, steps and samples (median of
repeats after a warm-up), split into observation (poses, fusion), network and surface; peak RSS.

    amodalgen3d bench --speed --views 1,4,8
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import numpy as np

from ..amodal_prior import prior_input
from ..features import model_inputs
from ..learned import DEFAULT_WEIGHTS, LearnedMethod, decoder_by_default
from ..model import NUM_SAMPLES, SAMPLING_STEPS
from ..observation import observe
from . import synth
from .bench import machine_info


def run_speed_bench(out: str | Path, views: tuple[int, ...] = (1, 4, 8), repeats: int = 5,
                    settings: tuple[tuple[int, int], ...] | None = None, seed: int = 7,
                    backends: tuple[str, ...] = ("torch", "onnxruntime")) -> dict:
    # (steps, samples): the defaults first, then the previous defaults and cheaper settings
    settings = settings or ((SAMPLING_STEPS, NUM_SAMPLES), (4, 8), (4, 4), (4, 1))

    scene = synth.render_scene(seed, "heldout", 0)
    rows = []
    for name, path in DEFAULT_WEIGHTS.items():
        if not path.is_file():
            continue
        for backend, (steps, samples) in [(b, st) for b in backends
                                          for st in (settings if name == "amodalgen3d" else ((1, 1),))]:
            m = LearnedMethod(path, steps=steps, samples=samples, backend=backend, decoder=decoder_by_default(path))
            for n in views:
                vs = scene.views[:n]
                obs = observe(vs, scene.target_id)
                m(obs)  # warm-up
                t_obs, t_all, t_net, t_prior = [], [], [], []
                prior_x = None
                if m.prior is not None:
                    prior_x = np.stack([pi.x for i in obs.used_views()
                                        if (pi := prior_input(obs.views[i], obs.masks[i])) is not None])
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    obs = observe(vs, scene.target_id)
                    t1 = time.perf_counter()
                    m(obs)
                    t2 = time.perf_counter()
                    t_obs.append(t1 - t0)
                    t_all.append(t2 - t0)
                    mi = model_inputs(obs, m.fcfg, prior=m.prior)
                    t3 = time.perf_counter()
                    m.occupancy_samples(mi)  # the networks alone: encoder and every sampling step
                    t_net.append(time.perf_counter() - t3)
                    if prior_x is not None and m.prior is not None:  # the 2D amodal prior's network on every view
                        t4 = time.perf_counter()
                        m.prior(prior_x)
                        t_prior.append(time.perf_counter() - t4)
                rows.append({"method": name, "backend": m.backend.name, "decoder": m.decoder is not None, "views": n,
                             "steps": steps, "samples": samples,
                             "seconds_median": float(np.median(t_all)), "seconds_min": float(np.min(t_all)),
                             "observation_seconds_median": float(np.median(t_obs)),
                             "network_seconds_median": float(np.median(t_net)),
                             "prior_seconds_median": float(np.median(t_prior)) if t_prior else 0.0})
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = {"machine": machine_info(), "repeats": repeats, "rows": rows, "peak_rss_mb": peak_mb}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md = ["## Seconds per object (posed views, CPU)", "",
          f"median of {repeats} runs after a warm-up; peak RSS of the process {peak_mb:.0f} MB", "",
          "| method | backend | local decoder | views | steps | samples | seconds (median) | of which observation | "
          "of which generator networks | of which 2D prior network |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['method']} | {r['backend']} | {'yes' if r['decoder'] else 'no'} | {r['views']} | {r['steps']} | "
                  f"{r['samples']} | "
                  f"{r['seconds_median']:.3f} | "
                  f"{r['observation_seconds_median']:.3f} | {r['network_seconds_median']:.3f} | "
                  f"{r['prior_seconds_median']:.3f} |")
    (out / "speed.json").write_text(json.dumps(report, indent=1))
    (out / "speed.md").write_text("\n".join(md) + "\n")
    return report


def add_node_latency(out: str | Path, node: dict, seconds: float) -> None:
    """Add the node's frame-to-result latency (a `bench --node` report: one object, 30 Hz, with the
    same defaults) to the speed report in out/."""
    out = Path(out)
    report = json.loads((out / "speed.json").read_text())
    report["node"] = {k: node[k] for k in ("latency_s_median", "latency_s_p95", "latency_samples", "first_result_s")}
    md = ["", f"Node, 30 Hz 640x480, one object, {seconds:.0f} s: frame-to-result latency median "
          f"{node['latency_s_median']} s, p95 {node['latency_s_p95']} s ({node['latency_samples']} results), "
          f"first result {node['first_result_s'] or float('nan'):.2f} s after the first frame."]
    (out / "speed.json").write_text(json.dumps(report, indent=1))
    with (out / "speed.md").open("a") as f:
        f.write("\n".join(md) + "\n")
