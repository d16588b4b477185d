#!/usr/bin/env bash
# 2026-12-03, tenth session, first call: the compiled evaluation step (0.0400 s at the defaults, ninth
# session) with its dense 1x1 convs as matmuls over the NHWC view (runtime.conv1x1=matmul), with Inductor's
# default matmul lowering and then with its GEMM autotuning (runtime.compile_options); then the Inductor-vs-
# eager GPU test of that variant.
set -u
source benchmarks/device_env.sh
stamp eval-1x1-matmul
timeout 200 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step runtime.conv1x1=matmul \
  --json $OUT/eval_mm.json >$OUT/eval_mm.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/eval_mm.json | cut -c1-210
stamp eval-1x1-matmul-autotune
timeout 250 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step runtime.conv1x1=matmul \
  +runtime.compile_options.max_autotune_gemm=true \
  --json $OUT/eval_mm_tuned.json >$OUT/eval_mm_tuned.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/eval_mm_tuned.json | cut -c1-210
stamp inductor-test
timeout 120 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_compile.py -k "inductor and matmul" 2>&1 \
  | grep -E "passed|failed|^E " | head -6
stamp end
