#!/usr/bin/env bash
# 2026-12-02 (third session), second call: the Triton kernels timed on the device alone (CUDA-graph
# replay; the first call's timings included host dispatch), the row-tiled depthwise weight gradient,
# the grouped 1x1 (pointwise) kernels, and the search step with each kernel setting.
set -u
source benchmarks/device_env.sh
stamp kernels
timeout 150 python3 benchmarks/conv_kernels.py 2>&1 | grep -v Warning | tail -20
stamp bench
B="python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads gaea_pcdarts_search"
timeout 80 $B runtime.depthwise=native runtime.pointwise=native --json $OUT/s_nn.json >$OUT/log_bench.txt 2>&1
timeout 80 $B runtime.depthwise=triton runtime.pointwise=native --json $OUT/s_tn.json >>$OUT/log_bench.txt 2>&1
timeout 80 $B runtime.depthwise=native runtime.pointwise=triton --json $OUT/s_nt.json >>$OUT/log_bench.txt 2>&1
timeout 80 $B runtime.depthwise=triton runtime.pointwise=triton --json $OUT/s_tt.json >>$OUT/log_bench.txt 2>&1
for f in $OUT/s_nn.json $OUT/s_tn.json $OUT/s_nt.json $OUT/s_tt.json; do python3 benchmarks/summarize.py $f | cut -c1-260; done
stamp profile
ROWS=30 timeout 90 python3 benchmarks/profile_step.py method=gaea_pcdarts search.batch_size=256 runtime.depthwise=triton runtime.pointwise=triton >$OUT/profile.txt 2>&1
grep "kernels per step" $OUT/profile.txt
stamp end
