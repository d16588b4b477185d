#!/usr/bin/env bash
# One device call: GPU tests, nas-bench (fast path), short real CIFAR-10 searches (eager reference vs fast
# path, same fp32 math), a cut-down real three-stage pipeline.  Needs .whl (hydra wheels) and .devdata.
set -u
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg COLUMNS=200
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl .whl/*.tar.gz 2>&1 | tail -2
export PYTHONPATH=/tmp/site:$PWD
OUT=${OUT:-/tmp/out}
python3 .devdata/prepare.py .devdata >/dev/null
timeout 150 python3 -m pytest -q tests/test_cuda_graphs.py tests/test_batchnorm.py tests/test_fused.py -p no:cacheprovider 2>&1 | tail -4
timeout 170 python3 -m nas_cli.bench --steps 10 --warmup 4 --json $OUT/bench_fast.json 2>&1 | tail -12
timeout 40 python3 benchmarks/bn_variants.py
timeout 45 python3 -m nas_cli.bench --workloads gaea_pcdarts_search --steps 10 --warmup 4 runtime.batchnorm=function2 --json $OUT/bench_fn2.json 2>&1 | grep gaea
timeout 45 python3 -m nas_cli.bench --workloads eval_step --steps 10 --warmup 4 runtime.precision=bf16 runtime.channels_last=true --json $OUT/bench_eval_bf16.json 2>&1 | tail -3
R="dataset=cifar10 dataset.root=.devdata dataset.limit_train=10000 search.epochs=3 objective.warmup_epochs=1 search.max_val_batches=10 search.log_every=1000 method=gaea_pcdarts"
timeout 100 python3 -m nas_cli $R runtime.fused=false runtime.cuda_graphs=false runtime.batchnorm=native hydra.run.dir=$OUT/real_eager 2>&1 | grep -E "^epoch|step " | cut -c1-160
timeout 60 python3 -m nas_cli $R hydra.run.dir=$OUT/real_fast 2>&1 | grep -E "^epoch|step " | cut -c1-160
rm -f $OUT/real_*/checkpoint.pt
LIMIT=170 EXTRA="dataset.limit_train=10000" SEARCH_EPOCHS=3 TRAIN_EPOCHS=3 bash benchmarks/gpu_real_pipeline.sh 2>&1 | tail -40
for o in bilevel bilevel_unrolled f2ba moreau; do  # issue 5: each objective's step and peak in its own process
  timeout 45 python3 -m nas_cli.bench --workloads pcdarts_search --steps 3 --warmup 2 objective=$o --json $OUT/obj_$o.json 2>&1 | grep pcdarts
done
