"""BCE of local decoder files on the same prepared points, per view count.

    python scripts/decoder_val.py SHARD.npz DECODER.safetensors [DECODER ...] [--last 20000]

A decoder's own validation loss is on the last 20 000 points of its own data, so two runs on
different data sizes validate on different points; this scores any decoders on one shard's points
(e.g. the last shard of the larger data, which the smaller run never saw).
"""

import argparse

import numpy as np
import torch

from amodalgen3d_ros.local_decoder import decoder_loss, load_decoder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("shard")
    ap.add_argument("decoders", nargs="+")
    ap.add_argument("--last", type=int, default=20000, help="score the shard's last N points (0: all)")
    a = ap.parse_args()
    with np.load(a.shard) as d:
        sl = slice(-a.last, None) if a.last else slice(None)
        x, y, nv = (torch.from_numpy(d["x"][sl].astype(np.float32)), torch.from_numpy(d["y"][sl].astype(np.float32)),
                    d["n_views"][sl])
    for path in a.decoders:
        net = load_decoder(path).eval()
        with torch.inference_mode():  # the training's own loss, on all points and per view count
            whole = float(decoder_loss(net, x, y))
            per = " ".join(f"{n} views {float(decoder_loss(net, x[m], y[m])):.4f} ({int(m.sum())})"
                           for n in np.unique(nv) for m in [torch.from_numpy(nv == n)])
        print(f"{path}: BCE {whole:.4f} over {len(y)} points; {per}")


if __name__ == "__main__":
    main()
