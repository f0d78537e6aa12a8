#!/bin/bash
# Strong scaling of pre-training: the same global batch (--batch, default 128) split over
# more ranks. For every rank count: median step time, molecules/s, speedup, efficiency
# and bytes per collective kind, into benchmarks/out/scaling/scaling_strong.csv, and a
# plot of throughput and efficiency (scaling_strong.png). See jobs/scaling_common.sh.
#
#   jobs/scaling_strong.sh --dataset DATA.h5 [--ranks "1 2"] [--batch 128] [--steps 6]
#   jobs/scaling_strong.sh --dataset DATA.h5 --ranks "1 2 4" --oversubscribe   (4: correctness only)
MODE=strong
BATCH_HELP="global batch, the same at every rank count"
BATCH_DEFAULT=128
BATCH_LABEL="global batch"
. "$(dirname "$0")/scaling_common.sh"
scaling_main "$@"
