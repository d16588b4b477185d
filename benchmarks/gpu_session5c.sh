#!/usr/bin/env bash
# 2026-12-02, fifth session, third device call: the defaults after the weighted-sum kernels
# (runtime.mixing, destination-major output) and the 3x3 average pool through the depthwise kernels;
# a full-data GAEA PC-DARTS search (2 epochs); the CUDA checks of the new kernels; the graph-replayed
# evaluation tests (both cases in one process: the NB201 GDAS case failed after the GAEA PC-DARTS
# one in the first call of this session, and passed alone in the second); kernel times.
set -u
source benchmarks/device_env.sh
python3 .devdata/prepare.py .devdata >/dev/null
stamp bench
timeout 200 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads gaea_pcdarts_search pcdarts_search \
  nb201_gaea_darts nb201_gdas --json $OUT/defaults.json >/dev/null 2>&1
python3 benchmarks/summarize.py $OUT/defaults.json | cut -c1-210
stamp full-epochs
timeout 110 python3 -m nas_cli method=gaea_pcdarts dataset=cifar10 dataset.root=.devdata search.epochs=2 \
  objective.warmup_epochs=0 search.log_every=1000 hydra.run.dir=/tmp/search_full >$OUT/log_full.txt 2>&1
grep -E "^epoch|search time|kernels" $OUT/log_full.txt | cut -c1-130
stamp tests
timeout 150 python3 -m pytest -q -p no:cacheprovider -rf tests/test_depthwise.py \
  -k "cuda and (mixing or nb201 or opcheck)" 2>&1 | tail -3
timeout 150 python3 -m pytest -q -p no:cacheprovider -rf --tb=long tests/test_cuda_graphs.py \
  -k "graph_replayed_evaluation" > $OUT/eval_graph_tests.txt 2>&1
grep -nE "passed|failed|^E |nas_cli/.*py:[0-9]+" $OUT/eval_graph_tests.txt | head -30
stamp mixing-kernels
timeout 90 python3 benchmarks/mixing_kernels.py > $OUT/mixing_kernels.txt 2>&1
tail -12 $OUT/mixing_kernels.txt
stamp end
