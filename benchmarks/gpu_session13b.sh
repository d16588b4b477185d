#!/usr/bin/env bash
# 2026-12-03, thirteenth session: the NHWC route of the fused NB201 cell (nb201_fused.NHWC_CONVS: relu(x_j)
# written channels_last by the source-input kernel, the merged conv weight channels_last, the BN kernels
# reading the NHWC conv output and writing NCHW rows). CUDA checks of the changed kernels first, then the
# NB201 steps with the route off and on (one process, alternating), then a GDAS profile with it on.
set -u
source benchmarks/device_env.sh
stamp cuda-checks
timeout 200 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_depthwise.py \
  -k "cuda and (mixing or batchnorm or nb201 or opcheck)" 2>&1 | grep -E "passed|failed|^E " | head -12
stamp nb201-nhwc
timeout 240 python3 benchmarks/nb201_merge.py --flag nhwc_convs --steps 30 2>&1 | grep "per step"
stamp profile-gdas
ROWS=45 timeout 120 python3 benchmarks/profile_step.py method=gdas search_space=nb201 search_space.preset=paper \
  search.batch_size=64 >$OUT/prof_gdas_nhwc.txt 2>&1; echo "profile rc $?"; grep -m1 "kernels per step" $OUT/prof_gdas_nhwc.txt
stamp end
