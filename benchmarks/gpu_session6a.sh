#!/usr/bin/env bash
# 2026-12-02, sixth session, first device call (prepared by the fifth session; ran as
# "gpu_session6a.sh a"): the GPU tests of graph replay (test_graph_replay_matches_eager_search_steps
# pinned to the Triton weighted sums in both modes), the CUDA checks of the experimental max-pool
# kernels and of runtime.batchnorm=triton, per-BN kernel times (bn_variants.py) and whole steps with
# runtime.batchnorm=triton. Part b (pool kernels, defaults, eval profiles) moved to gpu_session6b/c.sh.
set -u
source benchmarks/device_env.sh
part=${1:-all}   # a: up to "pool-kernels"; b: the rest; all: both
if [ "$part" != b ]; then
stamp graph-tests
timeout 200 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_cuda_graphs.py > $OUT/graph_tests.txt 2>&1
grep -nE "passed|failed|^E |^FAILED" $OUT/graph_tests.txt | head -20
stamp maxpool-tests
timeout 150 python3 -m pytest -q -p no:cacheprovider -rf tests/test_depthwise.py \
  -k "cuda and (maxpool or batchnorm or supernet or opcheck)" 2>&1 | tail -3
timeout 60 python3 -m pytest -q -p no:cacheprovider -rf tests/test_batchnorm.py 2>&1 | tail -2
stamp bn-kernels
timeout 60 python3 benchmarks/bn_variants.py 2>&1 | tail -6
stamp bn-steps
timeout 150 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads gaea_pcdarts_search nb201_gaea_darts nb201_gdas \
  runtime.batchnorm=triton --json $OUT/bn_triton.json >/dev/null 2>&1
python3 benchmarks/summarize.py $OUT/bn_triton.json | cut -c1-210
fi
if [ "$part" != a ]; then
stamp pool-kernels
timeout 150 python3 benchmarks/pool_kernels.py 2>&1 | grep -v Warning | tail -12
stamp bench
timeout 240 python3 -m nas_cli.bench --steps 10 --warmup 4 --json $OUT/defaults.json >/dev/null 2>&1
python3 benchmarks/summarize.py $OUT/defaults.json | cut -c1-210
stamp eval-profiles
ROWS=45 timeout 150 python3 benchmarks/profile_step.py --eval >$OUT/prof_eval.txt 2>&1
grep -m1 "kernels per step" $OUT/prof_eval.txt
ROWS=45 timeout 90 python3 benchmarks/profile_step.py --eval runtime.compile=false >$OUT/prof_eval_eager_kernels.txt 2>&1
grep -m1 "kernels per step" $OUT/prof_eval_eager_kernels.txt
fi
stamp end
