#!/usr/bin/env bash
# Final device call of the 2026-12-02 session: nas-bench with the defaults (eval network compiled by
# runtime.compile=auto), NB201 GDAS with the old BN choice, the NB201 fused-cell variants, the GPU tests.
set -u
source benchmarks/device_env.sh
B="python3 -m nas_cli.bench --steps 10 --warmup 4"
stamp defaults; timeout 240 $B --json $OUT/b_default.json >$OUT/log_bench.txt 2>&1
stamp gdas;     timeout 40 $B --workloads nb201_gdas runtime.batchnorm=function2 --json $OUT/b_gdas_fn2.json >>$OUT/log_bench.txt 2>&1
python3 benchmarks/summarize.py $OUT/b_*.json
stamp tests
timeout 150 python3 -m pytest -q tests/test_cuda_graphs.py tests/test_compile.py tests/test_batchnorm.py tests/test_nb201_fused.py -p no:cacheprovider 2>&1 | tail -5
stamp fused-variants
timeout 40 python3 benchmarks/nb201_fused.py --device cuda --batch 64 --steps 30 2>&1 | tail -8
stamp end
grep -iE "error|Traceback" $OUT/log_bench.txt | head -5
