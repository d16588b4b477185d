#!/usr/bin/env bash
# 2026-12-03, twelfth session, first call after enabling the merged conv weight kernel.
# (1) CUDA checks of the source-input kernels (spaces/source_inputs.py: a fused NB201 source's ReLU,
#     skip and average pool in one kernel per direction; only run under Triton's CPU interpreter so far):
#     mixing/pool kernels, the NB201 supernet against native, opcheck, search steps, masked GDAS tests.
# (2) The NB201 steps with the kernels off and on (benchmarks/nb201_merge.py --flag source_inputs).
# (3) A kernel profile of the NB201 GDAS step with both (kernel count beside the eleventh session's 3,248).
set -u
source benchmarks/device_env.sh
stamp cuda-checks
timeout 200 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_depthwise.py \
  -k "cuda and (mixing or nb201 or opcheck or search_steps)" 2>&1 | grep -E "passed|failed|^E " | head -8
timeout 120 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_hard_forward.py -k "graph_replay" 2>&1 \
  | grep -E "passed|failed|^E " | head -6
stamp nb201-source-inputs
timeout 200 python3 benchmarks/nb201_merge.py --flag source_inputs --steps 30 2>&1 | grep "per step"
stamp profile-nb201-gdas
ROWS=40 timeout 60 python3 benchmarks/profile_step.py method=gdas search_space=nb201 search_space.preset=paper \
  search.batch_size=64 >$OUT/prof_nb201_gdas.txt 2>&1; echo "profile rc $?"
grep -m1 "kernels per step" $OUT/prof_nb201_gdas.txt
stamp end
