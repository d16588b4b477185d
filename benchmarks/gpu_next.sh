#!/usr/bin/env bash
# Prepared 2026-12-02 (fourth session) for the next session's first device call: what that session
# could not measure. (1) the graph-replayed validation pass against the eager one, and a full-data
# GAEA PC-DARTS epoch with a warm Triton cache; (2) the NB201 GDAS case of the graph-replayed
# evaluation test; (3) NB201 steps in fp32 with channels_last (cuDNN's NCHW<->NHWC conversions were
# about 13 % of the NB201 GAEA DARTS step's device time); (4) the average-pooling experiment
# (benchmarks/pool_kernels.py; avg_pool2d was 16 % of that step's device time). Needs .whl and .devdata. (The call this
# file held before -- the NHWC-depthwise experiment -- ran on 2026-12-02, third session: docs/speed.md.)
set -u
source benchmarks/device_env.sh
python3 .devdata/prepare.py .devdata >/dev/null
stamp warm-triton-cache
timeout 120 python3 -m nas_cli.bench --steps 2 --warmup 3 --workloads gaea_pcdarts_search >/dev/null 2>&1
stamp validation
timeout 120 python3 benchmarks/validation_pass.py 2>&1 | tail -3
timeout 60 python3 benchmarks/validation_pass.py method=gdas search_space=nb201 search.batch_size=64 2>&1 | tail -3
stamp full-epochs
timeout 100 python3 -m nas_cli method=gaea_pcdarts dataset=cifar10 dataset.root=.devdata search.epochs=2 \
  objective.warmup_epochs=0 search.log_every=1000 hydra.run.dir=$OUT/search_full >$OUT/log_full.txt 2>&1
grep -E "^epoch|search time" $OUT/log_full.txt | cut -c1-130
stamp tests
timeout 90 python3 -m pytest -q -p no:cacheprovider -rf tests/test_cuda_graphs.py -k "graph_replayed_evaluation" 2>&1 | tail -3
stamp nb201-channels-last
B="python3 -m nas_cli.bench --steps 10 --warmup 4"
timeout 90 $B --workloads nb201_gaea_darts nb201_gdas runtime.channels_last=true --json $OUT/nb201_cl.json >/dev/null 2>&1
python3 benchmarks/summarize.py $OUT/nb201_cl.json | cut -c1-250
stamp pool-experiment
timeout 120 python3 benchmarks/pool_kernels.py 2>&1 | grep -v Warning | tail -8
stamp end
rm -rf $OUT/search_full/.hydra; find $OUT -name checkpoint.pt -delete
