#!/usr/bin/env bash
# 2026-12-03, twelfth session, third call: merged conv weight and source-input kernels on.
# (1) CUDA checks of the BN kernels with FUSED_STATS (spaces/bn_kernels.py: the per-channel step folded into
#     the elementwise kernels; interpreter-only so far), the NB201 supernet and the search steps.
# (2) NB201 GDAS and PC-DARTS steps with FUSED_STATS off and on (benchmarks/nb201_merge.py --flag bn_fused_stats).
# (3) nas-bench over the four search workloads with the defaults (FUSED_STATS on).
# The FUSED_STATS variant was removed after this call (measured slower; commit 03983ac has it), so part (2)
# runs only at that commit.
set -u
source benchmarks/device_env.sh
stamp cuda-checks
timeout 200 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_depthwise.py \
  -k "cuda and (batchnorm or nb201 or search_steps)" 2>&1 | grep -E "passed|failed|^E " | head -8
stamp bn-fused-stats
timeout 200 python3 benchmarks/nb201_merge.py --flag bn_fused_stats --methods gdas pcdarts --steps 20 2>&1 | grep "per step"
stamp bench-search
timeout 150 python3 -m nas_cli.bench --steps 10 --warmup 4 \
  --workloads nb201_gdas nb201_gaea_darts pcdarts_search gaea_pcdarts_search \
  --json $OUT/search.json >$OUT/bench_search.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/search.json | cut -c1-210
stamp end
