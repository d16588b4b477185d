#!/usr/bin/env bash
# 2026-12-02 (second session), last device call: the GPU tests after the shared-BN fused cell and the
# runtime.deterministic=false default; real CIFAR-10 GAEA PC-DARTS searches, fused cell vs per-edge
# reference (same math: the curves must agree), and two full-data epochs for the per-epoch time.
# Needs .whl and .devdata.
set -u
source benchmarks/device_env.sh
python3 .devdata/prepare.py .devdata >/dev/null
stamp tests
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_cuda_graphs.py tests/test_compile.py tests/test_batchnorm.py \
  tests/test_fused.py tests/test_nb201_fused.py 2>&1 | tail -3
stamp real-search
S="method=gaea_pcdarts dataset=cifar10 dataset.root=.devdata dataset.limit_train=10000 search.epochs=8 objective.warmup_epochs=2 search.max_val_batches=8 search.log_every=1000"
timeout 120 python3 -m nas_cli $S hydra.run.dir=$OUT/search_fused >$OUT/log_search.txt 2>&1
timeout 150 python3 -m nas_cli $S runtime.fused=false hydra.run.dir=$OUT/search_ref >>$OUT/log_search.txt 2>&1
stamp full-epochs
timeout 120 python3 -m nas_cli method=gaea_pcdarts dataset=cifar10 dataset.root=.devdata search.epochs=2 \
  objective.warmup_epochs=0 search.log_every=1000 hydra.run.dir=$OUT/search_full >$OUT/log_full.txt 2>&1
stamp end
find $OUT -name checkpoint.pt -delete
python3 benchmarks/metrics_table.py fused=$OUT/search_fused ref=$OUT/search_ref full=$OUT/search_full
for f in $OUT/log_*.txt; do echo "== $f"; grep -iE "error|Traceback" $f | head -5; done
grep -h '"genotype"' -A0 $OUT/search_*/summary.json 2>/dev/null | cut -c1-300
