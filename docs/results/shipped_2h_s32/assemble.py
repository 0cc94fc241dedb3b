"""Put the 2-hour recipe's files together as shipped (session 32).

Both networks were calibrated with the decoder at once, each with a copy of it (two processes,
one thread each), while each network's own, decoder-less calibration ran beside them on other
copies. A decoder's calibration is keyed by its network file's SHA-256, and the decoder-less one
is written into the network file, so its hash changes; the calibration itself depends only on
the tensors. So: check that each calibrated network holds the same tensors as the copy the
decoder was calibrated with, then write one decoder file holding both calibrations keyed by the
files that ship. `scripts/train_shipped.sh` does the same in order (network first, then decoder),
which gives these entries without this step.

    .venv/bin/python docs/results/shipped_2h_s32/assemble.py OUT_DECODER \\
        NETWORK_SHIPPED NETWORK_AS_CALIBRATED DECODER_COPY [NETWORK_SHIPPED NETWORK_AS_CALIBRATED DECODER_COPY ...]
"""
import sys
from pathlib import Path

import torch

from amodalgen3d_ros.backends import file_sha256
from amodalgen3d_ros.local_decoder import load_decoder, save_decoder
from amodalgen3d_ros.model import load_weights, weights_meta


def same_tensors(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def main(out: str, triples: list[str]) -> None:
    assert triples and len(triples) % 3 == 0, __doc__
    base, meta = load_decoder(triples[2]), weights_meta(triples[2])  # the first copy's network and metadata
    entries = {}
    for shipped, calibrated, copy in zip(triples[0::3], triples[1::3], triples[2::3]):
        if not same_tensors(load_weights(shipped), load_weights(calibrated)):
            raise SystemExit(f"{shipped} and {calibrated} are different networks")
        if not same_tensors(base, load_decoder(copy)):
            raise SystemExit(f"{copy} is another decoder than the first copy")
        cal = weights_meta(copy)["calibration_by_network"][file_sha256(calibrated)]
        entries[file_sha256(shipped)] = {**cal, "network": Path(shipped).name}
    meta["calibration_by_network"] = entries
    save_decoder(base, out, meta)
    for sha, cal in entries.items():
        print(cal["network"], sha[:12], "levels", cal["level_by_views"], "offsets", cal["hidden_offset_by_views"])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
