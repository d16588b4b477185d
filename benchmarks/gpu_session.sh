#!/usr/bin/env bash
# One device-tool call: install carried wheels, prepare CIFAR-10, run the benchmarks and a short real search.
set -u
source benchmarks/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv
python3 .devdata/prepare.py .devdata >/dev/null && ls .devdata/cifar-10-batches-py
timeout 170 python3 benchmarks/search_step.py --methods gaea_pcdarts pcdarts --batch 256 --steps 10 --warmup 3 --json $OUT/bench_search.json
timeout 60 python3 benchmarks/search_step.py --space nb201 --methods gaea_darts gdas --batch 64 --steps 15 --json $OUT/bench_nb201.json
timeout 60 python3 benchmarks/eval_step.py --json $OUT/bench_eval.json 2>&1 | tail -15
timeout 380 python3 -m nas_cli method=gaea_pcdarts dataset=cifar10 dataset.root=.devdata search.epochs=3 \
   objective.warmup_epochs=1 search.max_val_batches=20 search.log_every=50 hydra.run.dir=$OUT/gaea_cifar 2>&1 | grep -v "^\s*$" | tail -30
cp $OUT/gaea_cifar/metrics.jsonl $OUT/gaea_cifar_metrics.jsonl 2>/dev/null; rm -rf $OUT/gaea_cifar
