#!/usr/bin/env bash
# 2026-12-03, tenth session, last call (about 160 s of device time left): the compiled evaluation step with
# runtime.conv1x1=wgrad_matmul (cuDNN's 1x1 forward and input gradient, the weight gradient as a matmul:
# the per-direction best of gpu_session10c.sh's per-shape table).  The conv default measured 0.0400 s.
set -u
source benchmarks/device_env.sh
stamp eval-wgrad-matmul
timeout 155 python3 -m nas_cli.bench --steps 8 --warmup 3 --workloads eval_step runtime.conv1x1=wgrad_matmul \
  --json $OUT/eval_wgrad_mm.json >$OUT/eval_wgrad_mm.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/eval_wgrad_mm.json | cut -c1-210
stamp end
