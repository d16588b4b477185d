#!/usr/bin/env bash
# 2026-12-03, ninth session, second measuring call: the stride-1 3x3 average pool's own kernels
# (spaces/avgpool.py, was an all-ones depthwise conv and a broadcast multiplication) and the Triton BN's
# single multi-tensor running-statistics update.  Their CUDA checks (mixing/pool, BN, NB201 supernet,
# the custom-op opcheck), the masked GDAS GPU tests, then the search workloads (the evaluation network
# uses neither, and measured 0.0400 s in gpu_session9a.sh).
set -u
source benchmarks/device_env.sh
stamp cuda-checks
timeout 230 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_depthwise.py \
  -k "cuda and (mixing or nb201 or batchnorm or maxpool or opcheck or supernet)" 2>&1 | grep -E "passed|failed|^E " | head -8
stamp hard-forward-gpu
timeout 70 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_hard_forward.py 2>&1 \
  | grep -E "passed|failed|^E " | head -6
stamp bench-search
timeout 220 python3 -m nas_cli.bench --steps 10 --warmup 4 \
  --workloads nb201_gdas nb201_gaea_darts gaea_pcdarts_search pcdarts_search \
  --json $OUT/search.json >$OUT/bench_search.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/search.json | cut -c1-210
stamp end
