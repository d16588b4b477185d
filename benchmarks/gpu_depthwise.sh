#!/usr/bin/env bash
# 2026-12-02 (third session): Triton depthwise kernels (runtime.depthwise). Kernel check and timing
# per shape, the GPU tests, and the search/eval steps with native vs Triton depthwise convs.
set -u
source benchmarks/device_env.sh
stamp kernels
timeout 150 python3 benchmarks/depthwise_kernels.py 2>&1 | tail -14
stamp tests
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_depthwise.py -k cuda 2>&1 | tail -3
timeout 100 python3 -m pytest -q -p no:cacheprovider tests/test_fused.py -k cuda 2>&1 | tail -2
stamp bench
B="python3 -m nas_cli.bench --steps 10 --warmup 4"
timeout 100 $B --workloads gaea_pcdarts_search runtime.depthwise=native --json $OUT/search_native.json >$OUT/log_bench.txt 2>&1
timeout 150 $B --workloads gaea_pcdarts_search pcdarts_search runtime.depthwise=triton --json $OUT/search_triton.json >>$OUT/log_bench.txt 2>&1
timeout 100 $B --workloads eval_step runtime.compile=false runtime.depthwise=native --json $OUT/eval_native.json >>$OUT/log_bench.txt 2>&1
timeout 100 $B --workloads eval_step runtime.compile=false runtime.depthwise=triton --json $OUT/eval_triton.json >>$OUT/log_bench.txt 2>&1
for f in $OUT/search_native.json $OUT/search_triton.json $OUT/eval_native.json $OUT/eval_triton.json; do python3 benchmarks/summarize.py $f; done
stamp profile
ROWS=30 timeout 90 python3 benchmarks/profile_step.py method=gaea_pcdarts search.batch_size=256 runtime.depthwise=triton >$OUT/profile.txt 2>&1
grep "kernels per step" $OUT/profile.txt
stamp end
