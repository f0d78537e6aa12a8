#!/usr/bin/python3
"""PyTorch's GIN encoder alone (../shared/anchors/torch_ref.py, the reference model), forward +
backward at batch B on the molecules of one of our datasets, for the GIN rows of the "Speed
(issue 12)" table in benchmarks/README.md.

  /usr/bin/python3 benchmarks/gin_torch.py --dataset DATA.h5 [--batch 256] [--reps 7] [--threads 1]

Reads the graph arrays of an mmsa_prep dataset (atom_feat, atom_offset, bond_index,
bond_feat, bond_offset), collates the first batches with torch_ref.collate (self loops
included, as our batch builder), and times model.encode("graph", b) followed by
y.sum().backward() in training mode, as bench_torch.py times each encoder. Prints one CSV
line per batch and the median: forward ms, forward+backward ms.
"""
import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ANCHORS = os.environ.get("MMSA_SHARED", os.path.join(HERE, "..", "..", "shared")) + "/anchors"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True, help="mmsa_prep HDF5 file")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--batches", type=int, default=3, help="distinct batches, used in turn")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import h5py
    import numpy as np
    import torch
    sys.path.insert(0, ANCHORS)
    import torch_ref as R

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with h5py.File(args.dataset, "r") as h:
        ds = {k: h[k][()] for k in ("atom_offset", "atom_feat", "bond_offset", "bond_index", "bond_feat")}
    n_mol = len(ds["atom_offset"]) - 1
    n_atoms = int(ds["atom_offset"][-1])
    # collate wants every modality: no conformer (no atom pairs), empty image and fingerprint
    ds["xyz"] = np.zeros((n_atoms, 3), np.float32)
    ds["conf_ok"] = np.zeros(n_mol, np.uint8)
    ds["image"] = np.zeros((n_mol, 1), np.uint8)
    ds["fingerprint"] = np.zeros((n_mol, 1), np.uint8)
    nb = min(args.batches, n_mol // args.batch)
    batches = [R.collate(ds, np.arange(k * args.batch, (k + 1) * args.batch)) for k in range(nb)]

    model = R.MMSAModel()
    model.train()
    fwd, fb = [], []
    print("rep,atoms,edges,forward_ms,fwd_bwd_ms")
    for r in range(args.warmup + args.reps):
        b = batches[r % nb]
        t0 = time.perf_counter()
        y = model.encode("graph", b)
        t1 = time.perf_counter()
        y.sum().backward()
        t2 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        if r >= args.warmup:
            fwd.append(1e3 * (t1 - t0))
            fb.append(1e3 * (t2 - t0))
            print("%d,%d,%d,%.1f,%.1f" % (r, b["x"].shape[0], b["edge_index"].shape[1], fwd[-1], fb[-1]), flush=True)
    print("median,,,%.1f,%.1f" % (statistics.median(fwd), statistics.median(fb)))


if __name__ == "__main__":
    main()
