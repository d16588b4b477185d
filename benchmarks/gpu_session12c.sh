#!/usr/bin/env bash
# 2026-12-03, twelfth session, last call: nas-bench of the four search workloads with the product defaults
# (merged conv weight and source-input kernels on), then CUDA checks of the pooling and source-input kernels
# after their tile set-up and window sum moved into shared Triton helpers (same arithmetic), and of the BN kernels.
set -u
source benchmarks/device_env.sh
stamp bench-search
timeout 110 python3 -m nas_cli.bench --steps 10 --warmup 4 \
  --workloads nb201_gdas nb201_gaea_darts pcdarts_search gaea_pcdarts_search \
  --json $OUT/search.json >$OUT/bench_search.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/search.json | cut -c1-210
stamp cuda-checks
timeout 100 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_depthwise.py \
  -k "cuda and (mixing or batchnorm)" 2>&1 | grep -E "passed|failed|^E " | head -6
stamp end
