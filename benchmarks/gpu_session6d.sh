#!/usr/bin/env bash
# 2026-12-02, sixth session, fourth device call: the NB201 check with its running-statistics metric
# scaled as the other buffers' (a ~1e-8 running mean made the relative metric meaningless); the
# evaluation step after the compile fix (every cell shape compiled: Dynamo's recompile limit had left
# the last five cells eager); the GAEA PC-DARTS search step with the max-pool kernels on by default.
set -u
source benchmarks/device_env.sh
stamp nb201-check
timeout 80 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_depthwise.py \
  -k "nb201 and cuda" 2>&1 | grep -E "passed|failed|^E " | head -5
stamp bench
timeout 270 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step gaea_pcdarts_search \
  --json $OUT/defaults.json >/dev/null 2>&1
python3 benchmarks/summarize.py $OUT/defaults.json | cut -c1-210
stamp end
