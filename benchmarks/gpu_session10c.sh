#!/usr/bin/env bash
# 2026-12-03, tenth session, third call (about 290 s of device time left): the Triton dense 1x1 kernels
# (runtime.conv1x1=triton, spaces/dense1x1_kernels.py) on a GPU for the first time -- their CUDA checks,
# then every dense 1x1 conv of the evaluation network timed per direction: cuDNN conv vs matmul vs Triton.
set -u
source benchmarks/device_env.sh
stamp dense1x1-cuda-check
timeout 90 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_depthwise.py -k "dense1x1 and cuda" 2>&1 \
  | grep -E "passed|failed|^E |Error" | head -8
stamp conv1x1-per-shape
timeout 150 python3 benchmarks/eval_convs.py --conv1x1 --repeats 10 2>&1 | tail -14
stamp end
