#!/usr/bin/env bash
# Prepared 2026-12-02 (sixth session) for the next session's first device calls: what that session's
# last call could not finish (its benchmark timed out on a cold machine: Triton and Inductor
# compilation come first). (1) The evaluation step at the defaults after the recompile-limit fix
# (runtime/compile.py: all 9 cell shapes compiled; before, the last five cells ran eagerly) and its
# kernel profile; (2) the GAEA PC-DARTS search step at the defaults with the max-pool kernels on
# (spaces/maxpool.py ENABLED; measured 0.0933 s through benchmarks/pool_kernels.py, not yet through
# nas-bench); (3) the depthwise kernels at the evaluation network's shapes (conv_kernels.py), the
# next lever for the 0.025 s evaluation target (docs/speed.md "Where the evaluation step's time goes");
# (4) the evaluation step in fp32 with runtime.channels_last=true: the compiled step's cuDNN depthwise
# kernels are NHWC kernels (conv2d_c1_k1_nhwc, dgrad2d_c1_k1_nhwc) behind layout conversions, and
# only bf16 + channels_last has been measured there (0.0398 s).
# Up to ~12 min on a cold machine: run as three calls ("bash benchmarks/gpu_next.sh a", "... b", "... c").
set -u
source benchmarks/device_env.sh
part=${1:-all}
if [ "$part" = a ] || [ "$part" = all ]; then
stamp eval-bench
timeout 300 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step --json $OUT/eval.json >$OUT/eval_bench.log 2>&1; echo "bench rc $?"; tail -3 $OUT/eval_bench.log | cut -c1-200
python3 benchmarks/summarize.py $OUT/eval.json | cut -c1-210
stamp eval-profile
ROWS=50 timeout 200 python3 benchmarks/profile_step.py --eval >$OUT/prof_eval.txt 2>&1
grep -m1 "kernels per step" $OUT/prof_eval.txt; grep -c recompile_limit $OUT/prof_eval.txt
fi
if [ "$part" = b ] || [ "$part" = all ]; then
stamp search-bench
timeout 200 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads gaea_pcdarts_search pcdarts_search \
  nb201_gaea_darts nb201_gdas --json $OUT/search.json >$OUT/search_bench.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/search.json | cut -c1-210
stamp graph-tests-maxpool
timeout 150 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_cuda_graphs.py 2>&1 | grep -E "passed|failed|^E " | head -8
stamp conv-kernels
timeout 150 python3 benchmarks/conv_kernels.py 2>&1 | grep -E "eval|shape|sum over" | head -24
fi
if [ "$part" = c ] || [ "$part" = all ]; then
stamp eval-channels-last
timeout 300 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step runtime.channels_last=true \
  --json $OUT/eval_cl.json >$OUT/eval_cl_bench.log 2>&1; echo "bench rc $?"; tail -3 $OUT/eval_cl_bench.log | cut -c1-200
python3 benchmarks/summarize.py $OUT/eval_cl.json | cut -c1-210
fi
stamp end
