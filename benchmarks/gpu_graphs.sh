#!/usr/bin/env bash
# One device call: CUDA-graph tests, eager vs graph step benchmarks, a kernel profile.
set -u
source benchmarks/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout 200 python3 -m pytest -q -x tests/test_cuda_graphs.py -p no:cacheprovider 2>&1 | tail -6
for g in false true; do
  timeout 150 python3 benchmarks/search_step.py --methods gaea_pcdarts --batch 256 --steps 10 --warmup 4 --set runtime.cuda_graphs=$g --json $OUT/search_$g.json 2>&1 | tail -4
  timeout 60 python3 benchmarks/search_step.py --space nb201 --methods gaea_darts gdas --batch 64 --steps 15 --warmup 4 --set runtime.cuda_graphs=$g --json $OUT/nb201_$g.json 2>&1 | tail -5
  timeout 90 python3 benchmarks/eval_step.py --steps 20 --warmup 4 --set runtime.cuda_graphs=$g --json $OUT/eval_$g.json 2>&1 | tail -5
done
timeout 150 python3 benchmarks/search_step.py --methods gaea_pcdarts --batch 256 --steps 10 --warmup 4 --set runtime.cuda_graphs=true runtime.deterministic=false --json $OUT/search_nondet.json 2>&1 | tail -3
timeout 120 python3 benchmarks/profile_step.py method=gaea_pcdarts search.batch_size=256 runtime.cuda_graphs=false > $OUT/profile_eager.txt 2>&1; head -45 $OUT/profile_eager.txt
