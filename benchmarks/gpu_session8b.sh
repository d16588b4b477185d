#!/usr/bin/env bash
# 2026-12-02, eighth session, third device call.
# (1) CUDA checks of this session's kernel changes: the channels_last routes (kernels_match), the NHWC
#     kernels with native gather, opcheck; the masked GDAS tests (FreezeUnselected now multi-tensor).
# (2) Every depthwise conv of the evaluation network per channels_last route (eval_convs.py --routes).
# (3) nas-bench: the evaluation step with the measured routes (0.0451 s before), NB201 GDAS (0.0238 s
#     before; FreezeUnselected) and NB201 GAEA DARTS (0.0203 s).
set -u
source benchmarks/device_env.sh
stamp kernel-checks
timeout 150 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_depthwise.py \
  -k "cuda and (kernels_match_conv2d or nhwc or opcheck)" 2>&1 | grep -E "passed|failed|^E " | head -8
stamp hard-forward-gpu
timeout 100 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_hard_forward.py 2>&1 \
  | grep -E "passed|failed|^E " | head -6
stamp eval-convs-routes
timeout 120 python3 benchmarks/eval_convs.py --routes 2>&1 | tail -16 | cut -c1-200
stamp bench
timeout 260 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step nb201_gdas nb201_gaea_darts \
  --json $OUT/bench.json >$OUT/bench.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/bench.json | cut -c1-210
stamp end
