#!/usr/bin/env bash
# Prepared 2026-12-02 (seventh session) for the next session's first device calls.
# (a) The GPU tests of this session's changes that have not run on a GPU: the Inductor-vs-eager
#     evaluation test with the new default layout (runtime.channels_last=auto: channels_last and the
#     routed Triton depthwise kernels in the compiled network) and the CUDA supernet check (its
#     120 s limit ran out in the last call); then the graph tests.
# (b) The kernel profile of the evaluation step at the new defaults (0.0451 s: where the rest goes)
#     and the search workloads at the defaults (the eval step at these settings: 0.0451 s, measured).
# (c) The experimental NHWC depthwise kernels (spaces/depthwise_nhwc.py, ENABLED = False until this
#     measures them): their CUDA check, per-conv times beside cuDNN's (eval_convs.py --nhwc), and the
#     evaluation step with them on (eval_step_nhwc.py) against the 0.0451 s of the defaults.
# Up to ~9 min each on a cold machine: run as three calls ("bash benchmarks/gpu_next.sh a", "... b", "... c").
set -u
source benchmarks/device_env.sh
part=${1:-all}
if [ "$part" = a ] || [ "$part" = all ]; then
stamp compile-gpu-tests
timeout 300 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_compile.py -k "gpu" 2>&1 \
  | grep -E "passed|failed|^E " | head -8
stamp depthwise-cuda-checks
timeout 240 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_depthwise.py -k "cuda" 2>&1 \
  | grep -E "passed|failed|^E " | head -8
fi
if [ "$part" = b ] || [ "$part" = all ]; then
stamp eval-profile
ROWS=40 timeout 240 python3 benchmarks/profile_step.py --eval >$OUT/prof_eval.txt 2>&1; echo "profile rc $?"
grep -m1 "kernels per step" $OUT/prof_eval.txt
stamp bench-defaults
timeout 300 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads gaea_pcdarts_search pcdarts_search \
  nb201_gaea_darts nb201_gdas --json $OUT/defaults.json >$OUT/bench.log 2>&1
echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/defaults.json | cut -c1-210
fi
if [ "$part" = c ] || [ "$part" = all ]; then
stamp nhwc-check
timeout 150 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_depthwise.py -k "nhwc and cuda" 2>&1 \
  | grep -E "passed|failed|^E " | head -5
stamp eval-convs-nhwc
timeout 200 python3 benchmarks/eval_convs.py --nhwc 2>&1 | tail -32 | cut -c1-220
stamp eval-step-nhwc
timeout 280 python3 benchmarks/eval_step_nhwc.py --steps 10 --warmup 4 --json $OUT/eval_nhwc.json \
  >$OUT/eval_nhwc.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/eval_nhwc.json | cut -c1-210
fi
stamp end
