#!/usr/bin/env bash
# Prepared for the next single-GPU device call (not yet run): the NHWC-depthwise experiment
# (benchmarks/depthwise_layout.py; each variant twice, alternating, in its own process) and the
# kernel profile of the current search step. (The call this file held before -- runtime.deterministic
# true vs false, the revised GPU tests, a profile -- ran on 2026-12-02: benchmarks/results/README.md.)
# For data-parallel scaling on a 2-GPU machine see benchmarks/gpu_ddp.sh.
set -u
source benchmarks/device_env.sh
D="python3 benchmarks/depthwise_layout.py --device cuda --steps 10 --warmup 4"
stamp depthwise
timeout 120 $D --variant nhwc --check 2>&1 | tail -2
for i in 1 2; do
  timeout 90 $D --variant native 2>&1 | tail -1
  timeout 90 $D --variant nhwc 2>&1 | tail -1
done
stamp profile
ROWS=40 timeout 90 python3 benchmarks/profile_step.py method=gaea_pcdarts search.batch_size=256 >$OUT/profile.txt 2>&1
grep "kernels per step" $OUT/profile.txt
stamp end
