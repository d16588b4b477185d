#!/usr/bin/env bash
# One device call: nas-bench defaults, then torch.compile / bf16 variants of each workload, then the GPU tests.
# Needs .whl (hydra wheels). Prints a compact summary (benchmarks/summarize.py) last.
set -u
source benchmarks/device_env.sh
B="python3 -m nas_cli.bench --steps 10 --warmup 4"
stamp defaults;   timeout 150 $B --json $OUT/b_default.json >$OUT/log_default.txt 2>&1
stamp nb201;      timeout 120 $B --workloads nb201_gaea_darts runtime.compile=true --json $OUT/b_nb201_c.json >$OUT/log_nb201.txt 2>&1
stamp eval;       timeout 150 $B --workloads eval_step runtime.compile=true --json $OUT/b_eval_c.json >>$OUT/log_eval.txt 2>&1
stamp evalbf16;   timeout 60 $B --workloads eval_step runtime.precision=bf16 runtime.channels_last=true --json $OUT/b_eval_bf16.json >>$OUT/log_eval.txt 2>&1
stamp pcdarts;    timeout 200 $B --workloads gaea_pcdarts_search runtime.compile=true --json $OUT/b_pc_c.json >$OUT/log_pc.txt 2>&1
python3 benchmarks/summarize.py $OUT/b_*.json
stamp tests
timeout 100 python3 -m pytest -q -x tests/test_cuda_graphs.py tests/test_nb201_fused.py -p no:cacheprovider 2>&1 | tail -4
stamp end
for f in $OUT/log_*.txt; do echo "== $f"; grep -iE "error|Traceback" $f | head -5; done
