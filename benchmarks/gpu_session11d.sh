#!/usr/bin/env bash
# 2026-12-03, eleventh session, last device call.
# (1) The NB201 steps again (run-to-run spread beside gpu_session11c.sh), and NB201 GDAS in channels_last
#     with today's kernels: the 11c profile puts ~580 cuDNN NCHW<->NHWC transpose kernels (1.9 ms of
#     16.0 ms device time) in each GDAS step; this shows what the existing kernels do with NHWC input.
# (2) A kernel profile of the NB201 GAEA DARTS step (kernel count beside GDAS's 3,248).
# (3) The evaluation step with runtime.conv1x1=wgrad_matmul (about 1.1 ms per step less than the convs
#     by the tenth session's per-shape sums; never run in the step).
set -u
source benchmarks/device_env.sh
stamp bench-nb201
timeout 100 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads nb201_gdas nb201_gaea_darts \
  --json $OUT/nb201.json >$OUT/bench_nb201.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/nb201.json | cut -c1-210
timeout 60 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads nb201_gdas runtime.channels_last=true \
  --json $OUT/nb201_cl.json >$OUT/bench_nb201_cl.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/nb201_cl.json | cut -c1-210
stamp profile-nb201-gaea-darts
ROWS=50 timeout 60 python3 benchmarks/profile_step.py method=gaea_darts search_space=nb201 search_space.preset=paper \
  search.batch_size=64 >$OUT/prof_nb201_gaea_darts.txt 2>&1; echo "profile rc $?"
grep -m1 "kernels per step" $OUT/prof_nb201_gaea_darts.txt
stamp eval-wgrad-matmul
timeout 230 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step runtime.conv1x1=wgrad_matmul \
  --json $OUT/eval_wgrad_mm.json >$OUT/eval_wgrad_mm.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/eval_wgrad_mm.json | cut -c1-210
stamp end
