#!/usr/bin/env bash
# 2026-12-02, fifth session, second device call: (1) the full traceback of the failing NB201 GDAS
# case of the graph-replayed evaluation test; (2) the CUDA checks of the weighted-sum kernels
# (spaces/mixing.py) and of the 3x3 average pool through the depthwise kernels; (3) kernel times;
# (4) whole steps with runtime.mixing native vs triton, and on NB201 runtime.depthwise (= the pool
# there) native vs triton; (5) kernel profiles of the NB201 and the search step with both new kernels.
set -u
source benchmarks/device_env.sh
stamp gdas-eval-graph-test
timeout 150 python3 -m pytest -q -p no:cacheprovider -x --tb=long tests/test_cuda_graphs.py \
  -k "graph_replayed_evaluation and gdas" > $OUT/gdas_eval_test.txt 2>&1
grep -nE "^E |Error|nas_cli/.*py:[0-9]+|tests/.*py:[0-9]+|passed|failed" $OUT/gdas_eval_test.txt | head -40
stamp kernel-tests
timeout 240 python3 -m pytest -q -p no:cacheprovider -rf tests/test_depthwise.py -k "cuda" 2>&1 | tail -4
stamp mixing-kernels
timeout 90 python3 benchmarks/mixing_kernels.py 2>&1 | tail -10
stamp bench
B="python3 -m nas_cli.bench --steps 10 --warmup 4"
W="--workloads gaea_pcdarts_search nb201_gaea_darts nb201_gdas"
timeout 150 $B $W runtime.mixing=native --json $OUT/mix_native.json >/dev/null 2>&1
timeout 150 $B $W runtime.mixing=triton --json $OUT/mix_triton.json >/dev/null 2>&1
timeout 90 $B --workloads nb201_gaea_darts nb201_gdas runtime.mixing=triton runtime.depthwise=native \
  --json $OUT/mix_triton_pool_native.json >/dev/null 2>&1
for f in mix_native mix_triton mix_triton_pool_native; do python3 benchmarks/summarize.py $OUT/$f.json | cut -c1-200; done
stamp profiles
ROWS=25 timeout 90 python3 benchmarks/profile_step.py method=gaea_darts search_space=nb201 search_space.preset=paper search.batch_size=64 \
  runtime.mixing=triton > $OUT/prof_nb201.txt 2>&1
grep -m1 "kernels per step" $OUT/prof_nb201.txt
ROWS=30 timeout 120 python3 benchmarks/profile_step.py method=gaea_pcdarts search.batch_size=256 \
  runtime.mixing=triton > $OUT/prof_search.txt 2>&1
grep -m1 "kernels per step" $OUT/prof_search.txt
stamp end
