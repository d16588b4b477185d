#!/usr/bin/env bash
# 2026-12-02 (fourth session), last call (4.5 device-minutes left): the full-data epoch time with
# graph-replayed validation once the Triton kernels are compiled (the third call's first epoch,
# 74.3 s, included their compilation on a fresh machine), and the fixed NB201 GDAS case of the
# graph-replayed evaluation test. Needs .whl and .devdata.
set -u
source benchmarks/device_env.sh
python3 .devdata/prepare.py .devdata >/dev/null
stamp warm-triton-cache
timeout 45 python3 -m nas_cli.bench --steps 2 --warmup 3 --workloads gaea_pcdarts_search >/dev/null 2>&1
stamp full-epochs
timeout 70 python3 -m nas_cli method=gaea_pcdarts dataset=cifar10 dataset.root=.devdata search.epochs=2 \
  objective.warmup_epochs=0 search.log_every=1000 hydra.run.dir=$OUT/search_full >$OUT/log_full.txt 2>&1
grep -E "^epoch|search time" $OUT/log_full.txt | cut -c1-130
stamp tests
timeout 40 python3 -m pytest -q -p no:cacheprovider -rf tests/test_cuda_graphs.py -k "graph_replayed_evaluation" 2>&1 | tail -3
stamp end
