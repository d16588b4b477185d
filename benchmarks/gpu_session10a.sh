#!/usr/bin/env bash
# 2026-12-03, tenth session, first call: Inductor options for the compiled evaluation step (0.0400 s at the
# defaults, ninth session).  Coordinate-descent tuning of Inductor's generated BN/ReLU kernels, then the
# 1x1 convs lowered to matmuls with Inductor's GEMM autotuning (runtime.compile_options).
set -u
source benchmarks/device_env.sh
stamp eval-cd-tuning
timeout 280 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step \
  +runtime.compile_options.coordinate_descent_tuning=true \
  --json $OUT/eval_cd.json >$OUT/eval_cd.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/eval_cd.json | cut -c1-210
stamp eval-1x1-mm-autotune
timeout 280 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step \
  '+runtime.compile_options={conv_1x1_as_mm:true,max_autotune_gemm:true}' \
  --json $OUT/eval_mm.json >$OUT/eval_mm.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/eval_mm.json | cut -c1-210
stamp end
