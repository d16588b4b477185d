#!/usr/bin/env bash
# One device call: bf16 + channels_last variants in nas-bench, then short real CIFAR-10 runs, fp32 vs bf16,
# of the evaluation network (retrain stage) and of a GAEA PC-DARTS search.  Needs .whl and .devdata.
set -u
source benchmarks/device_env.sh
python3 .devdata/prepare.py .devdata >/dev/null
BF="runtime.precision=bf16 runtime.channels_last=true"
B="python3 -m nas_cli.bench --steps 10 --warmup 4"
stamp bench;  timeout 90 $B --workloads gaea_pcdarts_search nb201_gaea_darts $BF --json $OUT/b_bf16.json >$OUT/log_bench.txt 2>&1
stamp real-eval
T="stage=retrain stage.arch=GAEA_PCDARTS_cifar10 stage.retrain_seeds=1 dataset=cifar10 dataset.root=.devdata dataset.limit_train=10000 train.epochs=${TRAIN_EPOCHS:-5} train.log_every=1000"
timeout 120 python3 -m nas_cli $T hydra.run.dir=$OUT/eval_fp32 >$OUT/log_eval.txt 2>&1
timeout 120 python3 -m nas_cli $T $BF hydra.run.dir=$OUT/eval_bf16 >>$OUT/log_eval.txt 2>&1
stamp real-search
S="method=gaea_pcdarts dataset=cifar10 dataset.root=.devdata dataset.limit_train=10000 search.epochs=4 objective.warmup_epochs=1 search.max_val_batches=8 search.log_every=1000"
timeout 100 python3 -m nas_cli $S hydra.run.dir=$OUT/search_fp32 >$OUT/log_search.txt 2>&1
timeout 100 python3 -m nas_cli $S $BF hydra.run.dir=$OUT/search_bf16 >>$OUT/log_search.txt 2>&1
stamp bench-compile
timeout 170 $B --workloads eval_step $BF runtime.compile=true --json $OUT/b_eval_bf16_c.json >>$OUT/log_bench.txt 2>&1
stamp end
find $OUT -name checkpoint.pt -delete
python3 benchmarks/summarize.py $OUT/b_*.json
python3 benchmarks/metrics_table.py eval_fp32=$OUT/eval_fp32 eval_bf16=$OUT/eval_bf16 search_fp32=$OUT/search_fp32 search_bf16=$OUT/search_bf16
for f in $OUT/log_*.txt; do echo "== $f"; grep -iE "error|Traceback" $f | head -5; done
