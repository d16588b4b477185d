#!/usr/bin/env bash
# 2026-12-02, seventh session, fifth device call: the channels_last evaluation step with
# runtime.depthwise=triton again (the previous call failed: a strided conv inside the custom op
# returned a channels_last tensor where the fake promised NCHW), and the CUDA kernel checks.
set -u
source benchmarks/device_env.sh
stamp eval-channels-last-triton
timeout 280 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step runtime.depthwise=triton \
  runtime.channels_last=true --json $OUT/eval_cl_triton.json >$OUT/eval_cl_triton.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/eval_cl_triton.json | cut -c1-210
grep -m3 -iE "error|Traceback" $OUT/eval_cl_triton.log | cut -c1-300
stamp cuda-kernel-checks
timeout 120 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_depthwise.py \
  -k "cuda and (kernels_match or supernet)" 2>&1 | grep -E "passed|failed|^E " | head -5
stamp end
