#!/usr/bin/env bash
# 2026-12-03, thirteenth session, with the device time left: the channels_last BN statistics kernel with each
# sample's pixels split over several programs (bn_kernels.SPLIT_NHWC_STATS; the profile of the NHWC route
# had its one-program-per-sample form as the largest kernel, 11.6 us average): CUDA BN check, then the
# NB201 steps with the split off and on (one process, alternating).
set -u
source benchmarks/device_env.sh
stamp cuda-bn-check
timeout 70 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_depthwise.py \
  -k "cuda and batchnorm" 2>&1 | grep -E "passed|failed|^E " | head -6
stamp nb201-stats-split
timeout 170 python3 benchmarks/nb201_merge.py --flag nhwc_stats_split --steps 30 2>&1 | grep "per step"
stamp end
