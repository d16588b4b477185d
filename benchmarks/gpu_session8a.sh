#!/usr/bin/env bash
# 2026-12-02, eighth session, second device call.
# (1) Kernel profiles of NB201 GDAS (masked, graph-replayed) beside NB201 GAEA DARTS: where GDAS's
#     extra ~3.5 ms per step goes (0.0238 vs 0.0203 s, seventh session).
# (2) The GPU tests of the seventh session's changes that never ran on a GPU: the Inductor-vs-eager
#     evaluation test in both layouts (false, auto = channels_last + routed Triton depthwise) and the
#     CUDA depthwise checks including the supernet one.
set -u
source benchmarks/device_env.sh
for m in gdas gaea_darts; do
  stamp profile-nb201-$m
  ROWS=45 timeout 100 python3 benchmarks/profile_step.py method=$m search_space=nb201 search_space.preset=paper \
    search.batch_size=64 >$OUT/prof_nb201_$m.txt 2>&1; echo "profile rc $?"
  grep -m1 "kernels per step" $OUT/prof_nb201_$m.txt
done
stamp compile-gpu-tests
timeout 250 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_compile.py -k "gpu" 2>&1 \
  | grep -E "passed|failed|^E " | head -8
stamp depthwise-cuda-checks
timeout 200 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_depthwise.py -k "cuda and not nhwc" 2>&1 \
  | grep -E "passed|failed|^E " | head -8
stamp end
