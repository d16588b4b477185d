#!/usr/bin/env bash
# 2026-12-02, fifth session, fourth device call: the GPU tests of graph replay and of the masked
# one-hot forward with the new defaults (runtime.mixing=auto -> triton in replayed steps; the 3x3
# average pool through the depthwise kernels) and with the garbage collector off during captures.
set -u
source benchmarks/device_env.sh
stamp tests
timeout 220 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_cuda_graphs.py tests/test_hard_forward.py \
  -k "not garbage" > $OUT/gpu_tests.txt 2>&1
grep -nE "passed|failed|^E |^FAILED" $OUT/gpu_tests.txt | head -30
stamp end
