#!/usr/bin/env bash
# One device call (~7 min): GPU tests, nas-bench (fast path), short real CIFAR-10 searches (eager reference
# vs fast path, same fp32 math), a cut-down real three-stage pipeline.  Needs .whl (hydra wheels) and .devdata.
set -u
source benchmarks/device_env.sh
python3 .devdata/prepare.py .devdata >/dev/null
timeout 60 python3 -m pytest -q tests/test_cuda_graphs.py tests/test_batchnorm.py -p no:cacheprovider 2>&1 | tail -4
timeout 150 python3 -m nas_cli.bench --steps 10 --warmup 4 --json $OUT/bench_fast.json 2>&1 | tail -12
timeout 40 python3 -m nas_cli.bench --workloads gaea_pcdarts_search --steps 10 --warmup 4 runtime.batchnorm=function2 --json $OUT/bench_fn2.json 2>&1 | grep gaea
R="dataset=cifar10 dataset.root=.devdata dataset.limit_train=6000 search.epochs=3 objective.warmup_epochs=1 search.max_val_batches=8 search.log_every=1000 method=gaea_pcdarts"
timeout 70 python3 -m nas_cli $R runtime.fused=false runtime.cuda_graphs=false runtime.batchnorm=native hydra.run.dir=$OUT/real_eager 2>&1 | grep -E "^epoch|step " | cut -c1-160
timeout 40 python3 -m nas_cli $R hydra.run.dir=$OUT/real_fast 2>&1 | grep -E "^epoch|step " | cut -c1-160
rm -f $OUT/real_*/checkpoint.pt
LIMIT=150 EXTRA="dataset.limit_train=6000" SEARCH_EPOCHS=3 TRAIN_EPOCHS=3 bash benchmarks/gpu_real_pipeline.sh 2>&1 | tail -40
