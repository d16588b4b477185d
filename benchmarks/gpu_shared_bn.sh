#!/usr/bin/env bash
# 2026-12-02 (second session): the fused DARTS cell with one shared BN per edge group, batched-matmul
# mixing and 1x1 convs as matmuls; runtime.deterministic=false by default. GPU equivalence tests,
# all workloads at the new defaults, and the kernel profile of the search step.
set -u
source benchmarks/device_env.sh
stamp tests
timeout 100 python3 -m pytest -q -p no:cacheprovider tests/test_fused.py -k cuda 2>&1 | tail -2
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_cuda_graphs.py tests/test_batchnorm.py 2>&1 | tail -2
stamp bench
timeout 330 python3 -m nas_cli.bench --steps 10 --warmup 4 --json $OUT/b_new.json >$OUT/log_bench.txt 2>&1
python3 benchmarks/summarize.py $OUT/b_new.json
stamp profile
timeout 90 python3 benchmarks/profile_step.py method=gaea_pcdarts search.batch_size=256 >$OUT/profile_new.txt 2>&1
grep "kernels per step" $OUT/profile_new.txt
stamp end
