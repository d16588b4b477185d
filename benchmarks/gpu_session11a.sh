#!/usr/bin/env bash
# 2026-12-03, eleventh session, first device call.
# (1) Kernel profile of the NB201 GDAS step (0.0194 s against the 0.015 s target; the last profile was
#     taken before the ninth session's changes).
# (2) The evaluation step with bf16 autocast (compiled, channels_last, the routed depthwise kernels):
#     last measured compiled in bf16 before the channels_last routes (0.0398 s vs 0.0578 s fp32 then).
# (3) The evaluation step with runtime.conv1x1=wgrad_matmul (about 1.1 ms per step less than the convs
#     by the tenth session's per-shape sums; never run in the step).
set -u
source benchmarks/device_env.sh
stamp profile-nb201-gdas
ROWS=70 timeout 100 python3 benchmarks/profile_step.py method=gdas search_space=nb201 search_space.preset=paper \
  search.batch_size=64 >$OUT/prof_nb201_gdas.txt 2>&1; echo "profile rc $?"
grep -m1 "kernels per step" $OUT/prof_nb201_gdas.txt
stamp eval-bf16
timeout 230 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step runtime.precision=bf16 \
  --json $OUT/eval_bf16.json >$OUT/eval_bf16.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/eval_bf16.json | cut -c1-210
stamp eval-wgrad-matmul
timeout 230 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step runtime.conv1x1=wgrad_matmul \
  --json $OUT/eval_wgrad_mm.json >$OUT/eval_wgrad_mm.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/eval_wgrad_mm.json | cut -c1-210
stamp end
