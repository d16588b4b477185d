#!/usr/bin/env bash
# 2026-12-02, sixth session, second device call: the search workloads with runtime.batchnorm=auto ->
# triton (graph-replayed steps); a full-data GAEA PC-DARTS search (3 epochs) for the epoch time; the
# graph-replay test pinned to the Triton BN and the NB201 check with Triton BN (running statistics of
# the masked one-hot sample); the experimental max-pool kernels in the search step (on/off).
set -u
source benchmarks/device_env.sh
python3 .devdata/prepare.py .devdata >/dev/null
stamp bench
timeout 200 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads gaea_pcdarts_search pcdarts_search \
  nb201_gaea_darts nb201_gdas --json $OUT/defaults.json >/dev/null 2>&1
python3 benchmarks/summarize.py $OUT/defaults.json | cut -c1-210
stamp full-epochs
timeout 120 python3 -m nas_cli method=gaea_pcdarts dataset=cifar10 dataset.root=.devdata search.epochs=3 \
  objective.warmup_epochs=0 search.log_every=1000 hydra.run.dir=/tmp/search_full >$OUT/log_full.txt 2>&1
grep -E "^epoch|search time|kernels" $OUT/log_full.txt | cut -c1-130
stamp tests
timeout 150 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_cuda_graphs.py tests/test_depthwise.py \
  -k "graph_replay_matches or (nb201 and cuda)" > $OUT/tests.txt 2>&1
grep -nE "passed|failed|^E |^FAILED" $OUT/tests.txt | head -20
stamp pool-kernels
timeout 130 python3 benchmarks/pool_kernels.py 2>&1 | grep -v Warning | tail -12
stamp end
