#!/bin/bash
# Weak scaling of pre-training: the same batch per rank (--batch, default 64), so the
# global batch grows with the ranks. For every rank count: median step time,
# molecules/s, efficiency and bytes per collective kind, into
# benchmarks/out/scaling/scaling_weak.csv, and a plot of throughput and efficiency
# (scaling_weak.png). See jobs/scaling_common.sh.
#
#   jobs/scaling_weak.sh --dataset DATA.h5 [--ranks "1 2"] [--batch 64] [--steps 6]
#   jobs/scaling_weak.sh --dataset DATA.h5 --ranks "1 2 4" --oversubscribe   (4: correctness only)
MODE=weak
BATCH_HELP="batch per rank; the global batch is ranks x this"
BATCH_DEFAULT=64
BATCH_LABEL="batch per rank"
. "$(dirname "$0")/scaling_common.sh"
scaling_main "$@"
