#!/usr/bin/env bash
# 2026-12-03, eleventh session, a short last call: the merged NB201 conv weight in one Triton kernel
# (spaces/conv_merge.py) on CUDA (the mixing, NB201 supernet and opcheck checks), then the NB201 steps.
set -u
source benchmarks/device_env.sh
stamp cuda-checks
timeout 110 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_depthwise.py \
  -k "cuda and (mixing or nb201 or opcheck)" 2>&1 | grep -E "passed|failed|^E " | head -8
stamp bench-nb201
timeout 70 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads nb201_gdas nb201_gaea_darts \
  --json $OUT/nb201.json >$OUT/bench_nb201.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/nb201.json | cut -c1-210
stamp end
