#!/usr/bin/env bash
# One device call: a cut-down three-stage pipeline on real CIFAR-10 (.devdata = the shared JPEG CIFAR-10 copy)
# with the fast path (CUDA graphs), then the report.  Epoch counts are cut down; the protocol is the paper's.
set -u
source benchmarks/device_env.sh
python3 .devdata/prepare.py .devdata >/dev/null
SEARCH_EPOCHS=${SEARCH_EPOCHS:-4}
TRAIN_EPOCHS=${TRAIN_EPOCHS:-4}
timeout ${LIMIT:-480} python3 -m nas_cli stage=pipeline method=gaea_pcdarts dataset=cifar10 dataset.root=.devdata \
  search.epochs=$SEARCH_EPOCHS objective.warmup_epochs=1 search.log_every=1000 search.max_val_batches=20 \
  stage.search_seeds=2 stage.prune_at_epoch=null stage.retrain_seeds=2 stage.val_portion=0.1 \
  train.epochs=$TRAIN_EPOCHS train.log_every=1 ${EXTRA:-} hydra.run.dir=$OUT/real_pipeline 2>&1 | grep -v "^\s*$" | tail -60
python3 -c "import sys; from nas_cli.report import cli; sys.argv = ['nas-report', sys.argv[1]]; cli()" $OUT/real_pipeline 2>&1 | tail -30
find $OUT/real_pipeline -name checkpoint.pt -delete
