#!/usr/bin/env bash
# Prepared for the next device session (not yet run): cuDNN's deterministic mode vs autotuned
# algorithms (the reference implementations run with cudnn.benchmark=True), the GPU tests revised
# after the 2026-12-02 device run, and a kernel profile of the current fast search step.
set -u
source benchmarks/device_env.sh
B="python3 -m nas_cli.bench --steps 10 --warmup 4"
stamp det-true;  timeout 240 $B --json $OUT/b_det_true.json runtime.compile=false >$OUT/log_bench.txt 2>&1
stamp det-false; timeout 240 $B --json $OUT/b_det_false.json runtime.compile=false runtime.deterministic=false >>$OUT/log_bench.txt 2>&1
python3 benchmarks/summarize.py $OUT/b_*.json
stamp tests
timeout 200 python3 -m pytest -q tests/test_cuda_graphs.py tests/test_compile.py -p no:cacheprovider 2>&1 | tail -4
stamp profile
timeout 120 python3 benchmarks/profile_step.py method=gaea_pcdarts search.batch_size=256 2>&1 | tail -30
stamp end
