#!/usr/bin/env bash
# 2026-12-02 (third session), third call: plane-tiled depthwise forward/input-gradient kernels,
# weight gradients only when the backward pass needs them (the arch step computed them for nothing),
# GPU tests, and the search/eval steps with each kernel setting.
set -u
source benchmarks/device_env.sh
stamp kernels
timeout 100 python3 benchmarks/conv_kernels.py 2>&1 | grep -v Warning | tail -18
stamp bench
B="python3 -m nas_cli.bench --steps 10 --warmup 4"
timeout 70 $B --workloads gaea_pcdarts_search runtime.depthwise=native runtime.pointwise=native --json $OUT/s_nn.json >$OUT/log_bench.txt 2>&1
timeout 70 $B --workloads gaea_pcdarts_search runtime.depthwise=triton runtime.pointwise=native --json $OUT/s_tn.json >>$OUT/log_bench.txt 2>&1
timeout 70 $B --workloads gaea_pcdarts_search pcdarts_search --json $OUT/s_auto.json >>$OUT/log_bench.txt 2>&1
timeout 60 $B --workloads eval_step runtime.compile=false runtime.depthwise=native --json $OUT/e_n.json >>$OUT/log_bench.txt 2>&1
timeout 60 $B --workloads eval_step runtime.compile=false runtime.depthwise=triton --json $OUT/e_t.json >>$OUT/log_bench.txt 2>&1
for f in $OUT/s_nn.json $OUT/s_tn.json $OUT/s_auto.json $OUT/e_n.json $OUT/e_t.json; do python3 benchmarks/summarize.py $f | cut -c1-250; done
stamp tests
timeout 110 python3 -m pytest -q -p no:cacheprovider tests/test_depthwise.py -k cuda 2>&1 | tail -3
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/test_fused.py tests/test_cuda_graphs.py -k "cuda or graph" 2>&1 | tail -3
stamp profile
ROWS=24 timeout 60 python3 benchmarks/profile_step.py method=gaea_pcdarts search.batch_size=256 >$OUT/profile.txt 2>&1
grep "kernels per step" $OUT/profile.txt
stamp end
