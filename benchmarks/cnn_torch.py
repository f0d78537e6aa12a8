"""PyTorch's image encoder alone (../shared/anchors/torch_ref.py ImageCNN inside MMSAModel), forward +
backward at batch 256 on one thread: wall and this thread's CPU time, medians of --reps after 2 warm-up
runs, on the first 256 images of a bench_torch.py cache. The CPU time is what bench_cnn reports for ours:
on a shared machine it does not count the time the process waits for a core.

  /usr/bin/python3 benchmarks/cnn_torch.py --h5 CACHE.h5 [--reps 7]    (prints one line)
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--h5", required=True, help="bench_torch.py cache (--n N --cache-dir DIR writes DIR/zincN.h5)")
    ap.add_argument("--reps", type=int, default=7)
    a = ap.parse_args()
    anchors = os.path.join(os.environ.get("MMSA_SHARED", os.path.join(os.getcwd(), "..", "shared")), "anchors")
    sys.path.insert(0, anchors)
    import bench_torch as BT
    import torch_ref as R
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = R.MMSAModel()
    model.train()
    b = R.collate(BT.load_cache(a.h5), np.arange(0, 256))
    wall, cpu = [], []
    for r in range(2 + a.reps):
        t0, c0 = time.perf_counter(), time.thread_time()
        model.encode("image", b).sum().backward()
        model.zero_grad(set_to_none=True)
        if r >= 2:
            wall.append(time.perf_counter() - t0)
            cpu.append(time.thread_time() - c0)
    print("pytorch image encoder fwd+bwd, batch 256: wall %.1f ms, thread CPU %.1f ms (median of %d)"
          % (1e3 * statistics.median(wall), 1e3 * statistics.median(cpu), a.reps))


if __name__ == "__main__":
    main()
