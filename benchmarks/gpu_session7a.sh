#!/usr/bin/env bash
# 2026-12-02, seventh session, third device call: every convolution of the paper-size evaluation
# network timed per direction in NCHW and channels_last (eval_convs.py: which layers the compiled
# step's 52.8 ms go to), then gpu_next.sh part c (the fp32 evaluation step with channels_last).
set -u
source benchmarks/device_env.sh
stamp eval-convs
timeout 240 python3 benchmarks/eval_convs.py 2>&1 | tail -32
stamp part-c
bash benchmarks/gpu_next.sh c
