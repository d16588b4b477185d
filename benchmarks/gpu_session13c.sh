#!/usr/bin/env bash
# 2026-12-03, thirteenth session, last call: the CUDA checks again after two fixes (the NB201 supernet
# comparison in fp32 convs, as the NHWC route makes cuDNN pick other algorithms than the native path;
# the weighted sum's backward without bool arithmetic on sizes, which failed opcheck's dynamic-shape test),
# then nas-bench of the two NB201 search workloads with the product defaults (NHWC route on).
set -u
source benchmarks/device_env.sh
stamp cuda-checks
timeout 200 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_depthwise.py \
  -k "cuda and (mixing or batchnorm or nb201 or opcheck)" 2>&1 | grep -E "passed|failed|^E " | head -12
stamp bench-nb201
timeout 150 python3 -m nas_cli.bench --steps 20 --warmup 4 --workloads nb201_gdas nb201_gaea_darts \
  --json $OUT/nb201.json >$OUT/bench_nb201.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/nb201.json | cut -c1-210
stamp end
