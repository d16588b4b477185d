#!/usr/bin/env bash
# 2026-12-03, ninth session, first measuring call: the NB201 weighted sum over three operands (no
# concatenation of each source's rows) and the Triton BN/max-pool ops without zero-filled gradients.
# The new mixing kernels and the whole NB201 supernet against native on CUDA, the masked GDAS GPU tests,
# then every workload at the defaults (the NB201 and search steps first, the compiled evaluation step,
# with its ~100 s of compilation, last and in its own JSON).
set -u
source benchmarks/device_env.sh
stamp cuda-checks
timeout 170 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_depthwise.py \
  -k "cuda and (mixing or nb201)" 2>&1 | grep -E "passed|failed|^E " | head -8
stamp hard-forward-gpu
timeout 70 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_hard_forward.py 2>&1 \
  | grep -E "passed|failed|^E " | head -6
stamp bench-search
timeout 200 python3 -m nas_cli.bench --steps 10 --warmup 4 \
  --workloads nb201_gdas nb201_gaea_darts gaea_pcdarts_search pcdarts_search \
  --json $OUT/search.json >$OUT/bench_search.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/search.json | cut -c1-210
stamp bench-eval
timeout 190 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step \
  --json $OUT/eval.json >$OUT/bench_eval.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/eval.json | cut -c1-210
stamp end
