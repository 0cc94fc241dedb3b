"""The ``amodalgen3d`` command: synth, reconstruct, bench, train, replay, demo.

Bad input ends with one clear line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path


def _ints(s: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in s.split(",") if x)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{s}'") from None


def _names(s: str) -> tuple[str, ...]:
    return tuple(x for x in s.split(",") if x)


def cmd_synth(a: argparse.Namespace) -> int:
    from .tools.synth import SynthConfig, synth

    cfg = SynthConfig(n_views=a.views, depth_noise=not a.no_noise, width=a.width, height=a.height,
                      shapes=_shape_sources(a.shapes), real_share=a.real_share, plain_table_prob=a.plain_table or 0.0)
    synth(a.out, a.scenes, a.seed, a.split, cfg, workers=a.workers)
    return 0


def cmd_reconstruct(a: argparse.Namespace) -> int:
    from .reconstruct import reconstruct, save
    from .views import read_views_dir

    out = Path(a.output)
    if out.suffix.lower() not in (".ply", ".obj", ".glb"):
        raise _UsageError(f"{out}: output must end in .ply, .obj or .glb")
    vs = read_views_dir(a.views_dir, a.target)
    views = vs.views[: a.max_views] if a.max_views else vs.views
    rec = reconstruct(views, vs.target_id, a.method, seed=a.seed)
    mesh_path, json_path = save(rec, out)
    print(json.dumps({"mesh": str(mesh_path), "json": str(json_path), "frame": rec.frame,
                      "n_views_used": rec.n_views_used, "seconds": round(rec.seconds, 3)}))
    return 0


def cmd_bench(a: argparse.Namespace) -> int:
    from .tools.bench import BenchConfig, SceneFolderError, run_bench, run_pose_bench

    methods = a.methods or BenchConfig.methods
    noise = not a.no_depth_noise  # the same scenes (same seed) with exact depth: a separate folder
    scenes = a.scenes or BenchConfig.scenes
    cfg = BenchConfig(data=a.data or f"data/{a.split}{'' if noise else '_clean'}", split=a.split, scenes=scenes,
                      views=a.views, methods=methods, unposed=a.unposed, workers=a.workers, depth_noise=noise,
                      seed=BenchConfig.seed if a.seed is None else a.seed, shapes=_shape_sources(a.shapes),
                      plain_table_prob=a.plain_table or 0.0)
    if a.quick:
        cfg = BenchConfig(data=a.data or "data/heldout_quick", split=a.split, scenes=min(scenes, 4),
                          views=tuple(v for v in a.views if v <= 2) or (1,), methods=methods,
                          unposed=a.unposed, workers=a.workers, shapes=cfg.shapes, plain_table_prob=cfg.plain_table_prob)
    if a.combine:
        from .tools.bench import combine

        try:
            combine([Path(d) for d in a.combine.split(",")], Path(a.out))
        except ValueError as e:  # runs that cannot be one table: the user's choice to fix
            raise _UsageError(str(e)) from None
        print((Path(a.out) / "bench.md").read_text())
        return 0
    if a.paired:
        from .tools.bench import paired

        try:
            (pa, ma), (pb, mb) = (x.split(":", 1) for x in a.paired.split(",", 1))
        except ValueError:
            raise _UsageError(f"--paired takes RUN_A/bench.json:METHOD_A,RUN_B/bench.json:METHOD_B, got '{a.paired}'") from None
        try:
            md = paired((Path(pa), ma), (Path(pb), mb))
        except ValueError as e:
            raise _UsageError(str(e)) from None
        Path(a.out).mkdir(parents=True, exist_ok=True)
        (Path(a.out) / "paired.md").write_text(md)
        print(md)
        return 0
    if a.odometry:
        from .tools.odometry_bench import OdometryBenchConfig, run_odometry_bench

        ocfg = OdometryBenchConfig(rate_hz=a.rate, take_hz=a.take_rate)
        run_odometry_bench(a.out, replace(ocfg, scenes=a.scenes or ocfg.scenes,
                                          plain_table_prob=ocfg.plain_table_prob if a.plain_table is None else a.plain_table))
        print((Path(a.out) / "odometry.md").read_text())
        return 0
    if a.fuzz:
        from .ros.harness.fuzz import run_fuzz

        rep = run_fuzz(a.out, n_inputs=a.fuzz, params=_params(a.param), same_stamp=a.same_stamp)
        print(json.dumps(rep, indent=1))
        ok = rep["crashes"] == 0 and rep["valid_after_storm"].get("ok") and not rep.get("valid_frames_lost", 0)
        return 0 if ok else 1
    if a.node and a.stream:
        from .ros.harness.stream_bench import StreamConfig, run_stream_bench, run_stream_repeats

        scfg = StreamConfig(objects=a.objects, rate_hz=a.rate, width=a.stream_size[0], height=a.stream_size[1],
                            plain_table=(a.plain_table if a.plain_table is not None else 1.0) >= 0.5)
        if a.load is not None:
            rep = run_stream_repeats(a.out, scfg, a.repeats, a.load, params=_params(a.param))
            print(json.dumps({k: v for k, v in rep.items() if k != "runs"}, indent=1))
            return 0 if rep["tracks_unaccounted"] == 0 else 1
        rep = run_stream_bench(a.out, scfg, params=_params(a.param), storm=a.storm)
        print(json.dumps({k: v for k, v in rep.items() if k not in ("diagnostics_last", "tracks")}, indent=1))
        return 0
    if a.node:
        from .ros.harness.node_bench import run_node_bench

        rep = run_node_bench(a.out, rate_hz=a.rate, seconds=a.seconds, n_objects=a.objects, params=_params(a.param))
        print(json.dumps({k: v for k, v in rep.items() if k != "diagnostics_last"}, indent=1))
        return 0
    if a.speed:
        from .ros.harness.node_bench import run_node_bench
        from .tools.speed import add_node_latency, run_speed_bench

        run_speed_bench(a.out, views=a.views, repeats=a.repeats)
        node_seconds = 20.0  # the node's latency with the same defaults, where ROS is installed
        try:
            nb = run_node_bench(Path(a.out) / "node", rate_hz=30.0, seconds=node_seconds, n_objects=1)
        except ImportError:
            pass
        else:
            add_node_latency(a.out, nb, node_seconds)
        print((Path(a.out) / "speed.md").read_text())
        return 0
    if a.prior:
        from .tools.bench import run_cube_bench, run_prior_bench

        run_prior_bench(a.prior, a.out, data=cfg.data, scenes=cfg.scenes)
        run_cube_bench(a.prior, a.out, data=cfg.data, scenes=cfg.scenes, views=cfg.views, workers=cfg.workers)
        print((Path(a.out) / "prior.md").read_text() + "\n" + (Path(a.out) / "cube.md").read_text())
        return 0
    if a.poses:
        rep = run_pose_bench(cfg, a.out)
        print((Path(a.out) / "poses.md").read_text())
        return 0
    try:
        rep = run_bench(cfg, a.out)
    except SceneFolderError as e:
        raise _UsageError(str(e)) from None
    print((Path(a.out) / "bench.md").read_text())
    return 0 if not rep["summary"]["failures"] or a.allow_failures else 3


def cmd_train(a: argparse.Namespace) -> int:
    from .tools.train import PriorTrainConfig, TrainConfig, train, train_prior

    # what was given on the command line; each mode's config has its own defaults for the rest
    given = {k: v for k, v in {"data": a.data, "out": a.out, "scenes": a.scenes, "steps": a.steps, "batch": a.batch,
                               "lr": a.lr, "warmup": a.warmup}.items() if v is not None}
    common = {**given, "seed": a.seed, "threads": a.threads}
    if a.mode == "prior":
        print(json.dumps({"weights": str(train_prior(replace(PriorTrainConfig(), **common)))}))
        return 0
    if a.mode == "decoder":
        from .tools.train_decoder import DecoderTrainConfig, train_decoder

        dcfg = replace(DecoderTrainConfig(), **common, **({"generator": a.init} if a.init else {}),
                       **({"width": a.width} if a.width else {}))
        print(json.dumps({"weights": str(train_decoder(dcfg))}))
        return 0
    cfg = replace(TrainConfig(), **{"out": f"runs/{a.mode}", **common}, mode=a.mode, predict=a.predict,
                  view_fusion=a.view_fusion, use_vwca=not a.no_vwca, use_scca=not a.no_scca, use_gate=not a.no_gate,
                  prior="" if a.no_prior else (a.prior or TrainConfig.prior), init=a.init or "")
    weights = train(cfg)
    print(json.dumps({"weights": str(weights)}))
    return 0


def cmd_calibrate(a: argparse.Namespace) -> int:
    from .tools.calibrate import CALIBRATION_SCENES, CALIBRATION_VIEWS, calibrate

    if a.views is not None and (not a.views or min(a.views) < 1):
        raise _UsageError(f"--views takes view counts of 1 or more, got {a.views}")
    print(json.dumps(calibrate(a.weights, data=a.data, scenes=a.scenes or CALIBRATION_SCENES, seed=a.seed,
                               views=a.views or CALIBRATION_VIEWS, steps=a.steps, samples=a.samples,
                               decoder=a.decoder), indent=1))
    return 0


def _shape_sources(specs: list[str] | None) -> tuple[str, ...]:
    """--shapes DIR[:units=cm|middle=MIN-MAX|longest=MIN-MAX], repeatable: checked now, one line if wrong."""
    from .tools.shapes import ShapeSource

    for s in specs or []:
        try:
            ShapeSource.parse(s)
        except ValueError as e:
            raise _UsageError(str(e)) from None
    return tuple(specs or ())


def _params(pairs: list[str]) -> dict[str, str]:
    out = {}
    for p in pairs or []:
        if ":=" not in p:
            raise _UsageError(f"-p takes name:=value, got '{p}'")
        k, v = p.split(":=", 1)
        out[k] = v
    return out


def cmd_replay(a: argparse.Namespace) -> int:
    from .ros.harness.replay import replay

    summary = replay(a.bag, a.output, rate=a.rate, start=not a.no_start_node, params=_params(a.param))
    print(json.dumps(summary, indent=1))
    return 0 if summary["complete"] else 4


def cmd_demo(a: argparse.Namespace) -> int:
    from .ros.harness.demo import run_demo

    report = run_demo(a.out, storage=a.storage, params=_params(a.param), rate=a.rate)
    print(json.dumps(report, indent=1))
    print(f"demo: meshes in {a.out}/replay, picture {report['picture']}")
    return 0 if report["complete"] and report["tracks"] else 4


class _UsageError(Exception):
    pass


def _scene_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shapes", action="append", metavar="DIR[:OPTIONS]",
                   help="a folder of real meshes (obj/ply/stl) for the targets, one object in four held out by name; "
                        "OPTIONS: units=m|cm|mm, or middle=MIN-MAX / longest=MIN-MAX metres where a collection lost its "
                        "sizes (repeatable)")
    p.add_argument("--plain-table", type=float, default=None, metavar="P",
                   help="share of scenes on a plain, low-texture table (default 0: textured; bench --odometry 0.5)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="amodalgen3d", description="Amodal 3D object completion from sparse RGB-D views.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="render synthetic tabletop occlusion scenes with ground truth")
    s.add_argument("--out", required=True)
    s.add_argument("--scenes", type=int, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--split", choices=["train", "heldout"], default="train")
    s.add_argument("--views", type=int, default=8, help="views rendered per scene (1-8)")
    s.add_argument("--width", type=int, default=320)
    s.add_argument("--height", type=int, default=240)
    s.add_argument("--no-noise", action="store_true", help="exact depth, no sensor noise or holes")
    s.add_argument("--workers", type=int, default=None)
    _scene_options(s)
    s.add_argument("--real-share", type=float, default=1.0, help="with --shapes: share of scenes whose target is real")
    s.set_defaults(fn=cmd_synth)

    r = sub.add_parser("reconstruct", help="complete one object from a views directory")
    r.add_argument("views_dir")
    r.add_argument("-o", "--output", required=True, help="OUT.ply, .obj or .glb (OUT.json beside it)")
    r.add_argument("--method", default=None, help="reconstruction method (default: the best shipped one)")
    r.add_argument("--target", type=int, default=None, help="override scene.json's target_id")
    r.add_argument("--max-views", type=int, default=0, help="use only the first N views")
    r.add_argument("--seed", type=int, default=0)
    r.set_defaults(fn=cmd_reconstruct)

    b = sub.add_parser("bench", help="benchmark methods on held-out scenes")
    b.add_argument("--split", choices=["train", "heldout"], default="heldout")
    b.add_argument("--data", default=None, help="scene folder (synthesized if missing)")
    b.add_argument("--scenes", type=int, default=None, help="default 60 (--odometry: 4)")
    b.add_argument("--seed", type=int, default=None,
                   help="the scenes' seed (default 1234: the held-out benchmark; 99 with --split train: the calibration's)")
    b.add_argument("--views", type=_ints, default=(1, 2, 4))
    b.add_argument("--methods", type=_names, default=None)
    b.add_argument("--no-depth-noise", action="store_true", help="the same scenes with exact depth (no noise, no holes)")
    b.add_argument("--unposed", action="store_true", help="drop the poses: estimate them from the frames")
    b.add_argument("--poses", action="store_true", help="benchmark pose estimation instead")
    b.add_argument("--prior", default=None, metavar="WEIGHTS",
                   help="benchmark the 2D amodal prior (these weights) against the trivial prior instead")
    b.add_argument("--quick", action="store_true", help="a smoke run of about a minute")
    _scene_options(b)
    b.add_argument("--workers", type=int, default=2)
    b.add_argument("--out", default="bench_out")
    b.add_argument("--allow-failures", action="store_true")
    b.add_argument("--combine", default=None, help="DIR1,DIR2,...: one table from earlier runs' rows")
    b.add_argument("--paired", default=None, metavar="A.json:METHOD,B.json:METHOD",
                   help="two earlier runs' methods per object: mean difference with a 95 %% bootstrap interval")
    b.add_argument("--fuzz", type=int, default=0, metavar="N",
                   help="N malformed frames at the real node, then valid ones: counts, crashes, memory")
    b.add_argument("--same-stamp", action="store_true",
                   help="--fuzz: each malformed frame followed by the valid one with its stamp (none may be lost)")
    b.add_argument("--node", action="store_true", help="the ROS node under load: CPU, memory, latency")
    b.add_argument("--stream", action="store_true",
                   help="--node: a moving camera's stream with ground truth (--objects, --plain-table 0|1, --stream-size)")
    b.add_argument("--storm", type=int, default=0, help="--node --stream: malformed frames before each valid one (same stamp)")
    b.add_argument("--stream-size", type=int, nargs=2, default=(640, 480), metavar=("W", "H"),
                   help="--node --stream: image size (640 480, 1280 720)")
    b.add_argument("--odometry", action="store_true",
                   help="RGB-D odometry along a moving camera's 640x480 stream (--scenes, --plain-table, --rate)")
    b.add_argument("--rate", type=float, default=30.0, help="--node, --odometry: frame rate")
    b.add_argument("--take-rate", type=float, default=0.0,
                   help="--odometry: frames the node takes per second (its max_frame_rate_hz); 0: every frame")
    b.add_argument("--seconds", type=float, default=60.0, help="--node: duration")
    b.add_argument("--objects", type=int, default=5, help="--node: tracked objects in view")
    b.add_argument("-p", "--param", action="append", help="--node: node parameter name:=value")
    b.add_argument("--speed", action="store_true", help="seconds per object and peak memory of the learned method")
    b.add_argument("--repeats", type=int, default=5, help="--speed: runs per setting (median quoted); --load: runs")
    b.add_argument("--load", type=int, default=None, metavar="N",
                   help="--node --stream: the stream --repeats times beside N processes busy on a core each; "
                        "every track must end with a result or a counted reason")
    b.set_defaults(fn=cmd_bench)
    t = sub.add_parser("train", help="train the generator (flow), the deterministic reference (regress), the "
                                     "2D amodal prior (prior) or the local decoder (decoder)")
    t.add_argument("--data", default=None, help="default data/train (flow, regress, prior), data/decoder_train (decoder)")
    t.add_argument("--out", default=None)
    t.add_argument("--mode", choices=["flow", "regress", "prior", "decoder"], default="flow")
    t.add_argument("--predict", choices=["velocity", "x0"], default="x0",
                   help="flow mode: the network predicts the clean shape's logits (BCE; shipped) or the velocity (MSE)")
    t.add_argument("--scenes", type=int, default=None,
                   help="default 3000 (flow, regress, prior: the whole train split), 2700 (decoder)")
    t.add_argument("--steps", type=int, default=None, help="default 3000 (flow, regress), 4000 (prior), 15000 (decoder)")
    t.add_argument("--batch", type=int, default=None, help="default 16 (flow, regress), 32 (prior), 4096 points (decoder)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--view-fusion", choices=["visibility", "mean"], default="visibility")
    t.add_argument("--no-vwca", action="store_true", help="ablation: without View-Wise Cross Attention")
    t.add_argument("--no-scca", action="store_true", help="ablation: without Stereo-Conditioned Cross Attention")
    t.add_argument("--no-gate", action="store_true", help="ablation: SCCA without its gate")
    t.add_argument("--prior", default=None,
                   help="the 2D amodal prior's weights (its outputs are inputs)")
    t.add_argument("--no-prior", action="store_true", help="ablation: without the 2D amodal prior")
    t.add_argument("--init", default=None, metavar="WEIGHTS",
                   help="start from these weights (the same network, any mode), e.g. the generator from the reference; "
                        "decoder mode: the generator whose fields it learns from (default the shipped one)")
    t.add_argument("--width", type=int, default=None, help="decoder mode: the MLP's width (default 128)")
    t.add_argument("--lr", type=float, default=None, help="peak learning rate (default 3e-4)")
    t.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 100)")
    t.set_defaults(fn=cmd_train)
    c = sub.add_parser("calibrate", help="choose a learned method's surface level on fresh validation scenes")
    c.add_argument("weights")
    c.add_argument("--data", default="data/calib")
    c.add_argument("--scenes", type=int, default=None, help="validation scenes (default: calibrate.CALIBRATION_SCENES)")
    c.add_argument("--seed", type=int, default=99)
    c.add_argument("--steps", type=int, default=None, help="the generator's Euler steps to calibrate for (default: its default)")
    c.add_argument("--samples", type=int, default=None, help="the generator's samples to calibrate for (default: its default)")
    c.add_argument("--decoder", default=None, metavar="DECODER_WEIGHTS",
                   help="calibrate WEIGHTS followed by this local decoder (stored in the decoder's file)")
    c.add_argument("--views", type=_ints, default=None, metavar="N,N,...",
                   help="the view counts to fit a level for (default: calibrate.CALIBRATION_VIEWS, 1,2,3,4,6,8; "
                        "counts between take the fit of the largest below)")
    c.set_defaults(fn=cmd_calibrate)

    rp = sub.add_parser("replay", help="play a rosbag2 through the node, record its outputs, write meshes")
    rp.add_argument("bag")
    rp.add_argument("-o", "--output", required=True)
    rp.add_argument("--rate", type=float, default=1.0, help="playback speed (0: as fast as possible)")
    rp.add_argument("--no-start-node", action="store_true", help="use a node that is already running")
    rp.add_argument("-p", "--param", action="append", help="node parameter name:=value (repeatable)")
    rp.set_defaults(fn=cmd_replay)

    d = sub.add_parser("demo", help="render a synthetic tabletop bag, replay it through the node, draw the result")
    d.add_argument("--out", default="demo_out")
    d.add_argument("--storage", choices=["sqlite3", "mcap"], default="sqlite3")
    d.add_argument("--rate", type=float, default=1.0)
    d.add_argument("-p", "--param", action="append", help="node parameter name:=value (repeatable)")
    d.set_defaults(fn=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    from .views import ViewsFormatError

    parser = build_parser()
    a = parser.parse_args(argv)
    if getattr(a, "method", "x") is None:
        from .reconstruct import DEFAULT_METHOD

        a.method = DEFAULT_METHOD
    try:
        return int(a.fn(a))
    except (ViewsFormatError, _UsageError, FileNotFoundError) as e:
        print(f"amodalgen3d {a.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"amodalgen3d {a.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # unexpected: still one line, with the class for a bug report
        print(f"amodalgen3d {a.command}: internal error: {e.__class__.__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
