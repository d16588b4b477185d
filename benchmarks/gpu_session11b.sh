#!/usr/bin/env bash
# 2026-12-03, eleventh session: a short real CIFAR-10 training of the evaluation network (paper size, the
# GAEA PC-DARTS CIFAR-10 genotype, all 50k training images, EPOCHS epochs, compiled, channels_last), fp32
# beside bf16 autocast, as two processes on the one GPU at the same time (their step times are not
# measurements; the accuracy and loss per epoch are). Needs .whl and .devdata.
set -u
source benchmarks/device_env.sh
E=${EPOCHS:-8}
stamp prepare
python3 .devdata/prepare.py .devdata >/dev/null
T="stage=retrain stage.arch=GAEA_PCDARTS_cifar10 stage.retrain_seeds=1 dataset=cifar10 dataset.root=.devdata train.epochs=$E train.log_every=100000"
stamp real-eval
timeout 530 python3 -m nas_cli $T hydra.run.dir=$OUT/eval_fp32 >$OUT/log_fp32.txt 2>&1 &
timeout 530 python3 -m nas_cli $T runtime.precision=bf16 hydra.run.dir=$OUT/eval_bf16 >$OUT/log_bf16.txt 2>&1 &
wait
stamp end
find $OUT -name "*.pt" -delete
python3 benchmarks/metrics_table.py eval_fp32=$OUT/eval_fp32 eval_bf16=$OUT/eval_bf16
for f in $OUT/log_*.txt; do echo "== $f"; grep -iE "error|Traceback" $f | head -5; tail -3 $f; done
