#!/usr/bin/env bash
# 2026-12-02, eighth session, fourth device call: the route rule refined to the per-conv optimum of
# eval_convs.py --routes (dilated stride-1 -> nhwc, strided undilated -> cudnn) and the masked NB201
# forward's shared BN-update masks: the masked GDAS GPU tests, then every workload at the defaults
# (the routes themselves were checked on CUDA in gpu_session8b.sh).
set -u
source benchmarks/device_env.sh
stamp hard-forward-gpu
timeout 60 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_hard_forward.py 2>&1 \
  | grep -E "passed|failed|^E " | head -6
stamp bench
timeout 280 python3 -m nas_cli.bench --steps 10 --warmup 4 \
  --workloads eval_step nb201_gdas nb201_gaea_darts gaea_pcdarts_search pcdarts_search \
  --json $OUT/bench.json >$OUT/bench.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/bench.json | cut -c1-210
stamp end
