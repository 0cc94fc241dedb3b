"""The package's layout, checked on its imports: a one-way core in pipeline order, no ROS in the
core, tools and harnesses apart from the runtime path."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "amodalgen3d_ros"
# the runtime path, in pipeline order: a module may import only modules before it
RUNTIME = ["weights_io", "views", "geometry", "camera_tracking", "surface", "observation", "amodal_prior", "features", "model",
           "backends", "local_decoder", "learned", "baselines", "reconstruct", "tracks", "scheduling", "worker"]


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__")


def imports_of(path: Path) -> set[str]:
    """Every package module that a file imports, at the top or inside functions."""
    me = module_name(path).split(".")
    package = me if path.name == "__init__.py" else me[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + (node.module.split(".") if node.module else []))
            for a in node.names:  # "from . import synth" names a module
                sub = f"{mod}.{a.name}"
                out.add(sub if (PKG.parent / sub.replace(".", "/")).with_suffix(".py").exists() else mod)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("amodalgen3d_ros.") and m != "amodalgen3d_ros.msg"}


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in PKG.rglob("*.py")}


def test_no_import_circle():
    g = graph()
    done: set[str] = set()

    def visit(m: str, stack: list[str]) -> None:
        if m in stack:
            raise AssertionError("import circle: " + " -> ".join(stack[stack.index(m):] + [m]))
        if m in done:
            return
        for n in g.get(m, ()):
            visit(n, stack + [m])
        done.add(m)

    for m in g:
        visit(m, [])


def test_runtime_modules_import_only_earlier_ones():
    g = graph()
    order = [f"amodalgen3d_ros.{m}" for m in RUNTIME]
    for i, m in enumerate(order):
        later = g[m] - set(order[:i])
        assert not later, f"{m} imports {sorted(later)}: not before it in the pipeline (or not runtime)"


def test_only_cli_imports_ros_and_tools_stay_off_the_runtime_path():
    for m, deps in graph().items():
        if m.startswith("amodalgen3d_ros.ros"):
            assert not any(d.startswith("amodalgen3d_ros.tools") for d in deps) or ".harness" in m, \
                f"{m}: the node's layer imports no training or benchmark tool"
            continue
        if m != "amodalgen3d_ros.cli":
            assert not any(d.startswith("amodalgen3d_ros.ros") for d in deps), f"{m} imports the ROS layer"


def test_every_core_module_imports_without_rclpy_and_the_runtime_loads_no_tool():
    core = sorted(module_name(p) for p in PKG.rglob("*.py") if "ros" not in p.relative_to(PKG).parts[:1])
    assert len(core) > 25
    code = ("import sys\n" + "".join(f"import {m}\n" for m in core)
            + "print(any(k == 'rclpy' or k.startswith('rclpy.') for k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    # the node's process imports these; its worker child runs the methods: no torch in the node
    runtime = ["amodalgen3d_ros.reconstruct", "amodalgen3d_ros.worker", "amodalgen3d_ros.scheduling",
               "amodalgen3d_ros.tracks"]
    code = ("import sys\n" + "".join(f"import {m}\n" for m in runtime)
            + "print(sorted(k for k in sys.modules if k.startswith('amodalgen3d_ros.tools')), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] False"
    # the learned method itself (the worker child) loads no training or benchmark module either
    code = ("import sys\nfrom amodalgen3d_ros.reconstruct import resolve_method\nresolve_method('auto')\n"
            "print(sorted(k for k in sys.modules if k.startswith('amodalgen3d_ros.tools')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
