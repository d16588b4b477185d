#!/usr/bin/env bash
# 2026-12-02, seventh session, fourth device call: the evaluation step with the Triton depthwise
# kernels under torch.compile, in NCHW (every depthwise conv through the kernels) and in
# channels_last (cuDNN's NHWC kernels except the dilated and <= 8x8-plane convs, which convert to
# NCHW and run the kernels: spaces/depthwise.py NCHW_FOR_CHANNELS_LAST_MAX_PLANE, from eval_convs.py).
set -u
source benchmarks/device_env.sh
stamp eval-nchw-triton
timeout 280 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step runtime.depthwise=triton \
  --json $OUT/eval_triton.json >$OUT/eval_triton.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/eval_triton.json | cut -c1-210
stamp eval-channels-last-triton
timeout 280 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step runtime.depthwise=triton \
  runtime.channels_last=true --json $OUT/eval_cl_triton.json >$OUT/eval_cl_triton.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/eval_cl_triton.json | cut -c1-210
stamp end
