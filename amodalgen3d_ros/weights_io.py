"""Files: the shipped networks' one weights format (safetensors, config and meta as JSON in the
header, never pickle), file hashes, and atomic writes. A leaf: it imports nothing of the package.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

WEIGHTS_DIR = Path(__file__).parent / "weights"  # the shipped networks (and their model card)


class WeightsError(RuntimeError):
    """Missing or corrupt weights: one clear line."""


def write_safetensors(net: Any, path: str | Path, meta: dict | None = None) -> None:
    """A network's tensors, its config (a dataclass at net.cfg) and a meta JSON, in one file."""
    # safetensors.torch imports torch: here, not at the top, so that processes that only write
    # meshes (the ROS node; its worker child runs the networks) never load torch
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    save_file(tensors, str(path), metadata={"config": json.dumps(asdict(net.cfg)), "meta": json.dumps(meta or {})})


def read_safetensors(path: str | Path, make_cfg, what: str = "weights") -> tuple[Any, dict]:
    """(make_cfg(stored config dict), tensors) of a file written by write_safetensors; a missing or
    corrupt file is a WeightsError naming `what`."""
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


def load_net(path: str | Path, make_cfg, make_net, what: str):
    """make_net(cfg) with the tensors of a write_safetensors file loaded strictly, in eval mode; a
    file that does not fit is a WeightsError naming `what`."""
    cfg, state = read_safetensors(path, make_cfg, what)
    net = make_net(cfg)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise WeightsError(f"{what} {path} do not fit the network: {str(e).splitlines()[0]}") from None
    return net.eval()


def header_json(path: str | Path, key: str) -> dict:
    """One JSON entry of a weights file's header ("config" or "meta"), without reading tensors."""
    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get(key, "{}"))


def weights_meta(path: str | Path) -> dict:
    """The 'meta' JSON stored in a weights file (steps, data, calibration, ...)."""
    return header_json(path, "meta")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and rename: never a half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
