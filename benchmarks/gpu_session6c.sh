#!/usr/bin/env bash
# 2026-12-02, sixth session, third device call: kernel profiles of the evaluation step at paper size
# (compiled, the default, and uncompiled), to see where its 55 ms go; and the running statistics of
# the masked NB201 one-hot forward with native vs Triton BN (a one-off script, benchmarks/debug_masked_bn.py, removed afterwards: the CUDA
# check of the second call found them different while loss and gradients agreed).
set -u
source benchmarks/device_env.sh
stamp masked-bn
timeout 90 python3 benchmarks/debug_masked_bn.py cuda 2>&1 | tail -40
stamp eval-profile-compiled
ROWS=50 timeout 230 python3 benchmarks/profile_step.py --eval >$OUT/prof_eval.txt 2>&1
grep -m1 "kernels per step" $OUT/prof_eval.txt
stamp eval-profile-uncompiled
ROWS=50 timeout 100 python3 benchmarks/profile_step.py --eval runtime.compile=false >$OUT/prof_eval_uncompiled.txt 2>&1
grep -m1 "kernels per step" $OUT/prof_eval_uncompiled.txt
stamp end
