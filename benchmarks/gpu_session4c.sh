#!/usr/bin/env bash
# 2026-12-02 (fourth session), third call: the GPU tests of the masked GDAS steps again (TF32 off:
# the second call's comparison ran with TF32 convs) and of the graph-replayed validation forward;
# two full-data CIFAR-10 epochs of GAEA PC-DARTS (the per-epoch time with graph-replayed
# validation); the search and NB201 workloads at the defaults. Needs .whl and .devdata.
set -u
source benchmarks/device_env.sh
python3 .devdata/prepare.py .devdata >/dev/null
stamp tests
timeout 110 python3 -m pytest -q -p no:cacheprovider -rf tests/test_hard_forward.py tests/test_cuda_graphs.py \
  -k "graph_replayed or tau" >$OUT/log_tests.txt 2>&1
grep -E "passed|failed|^FAILED|Error|assert " $OUT/log_tests.txt | head -20
stamp full-epochs
timeout 100 python3 -m nas_cli method=gaea_pcdarts dataset=cifar10 dataset.root=.devdata search.epochs=2 \
  objective.warmup_epochs=0 search.log_every=1000 hydra.run.dir=$OUT/search_full >$OUT/log_full.txt 2>&1
grep -E "^epoch|search time" $OUT/log_full.txt | cut -c1-130
stamp bench
timeout 130 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads gaea_pcdarts_search nb201_gaea_darts nb201_gdas \
  --json $OUT/defaults.json >$OUT/log_bench.txt 2>&1
python3 benchmarks/summarize.py $OUT/defaults.json | cut -c1-250
stamp end
rm -rf $OUT/search_full/.hydra; find $OUT -name checkpoint.pt -delete
for f in $OUT/log_*.txt; do echo "== $f"; grep -iE "error|Traceback" $f | head -5; done
