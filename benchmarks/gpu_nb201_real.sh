#!/usr/bin/env bash
# Short real NB201 searches on CIFAR-10 (issue 4 measurement): DARTS bilevel vs GAEA DARTS ERM,
# run side by side on one GPU (the steps are launch-bound, so two processes share it well).
set -u
source benchmarks/device_env.sh
python3 .devdata/prepare.py .devdata >/dev/null
common="dataset=cifar10 dataset.root=.devdata search.log_every=100 search.max_val_batches=20"
timeout ${T:-520} python3 -m nas_cli experiment=paper/nb201_darts_bilevel search.epochs=${E1:-3} search.scheduler_epochs=50 \
  $common hydra.run.dir=$OUT/darts_bilevel > $OUT/darts.log 2>&1 &
timeout ${T:-520} python3 -m nas_cli experiment=paper/nb201_gaea_darts_erm search.epochs=${E2:-2} search.scheduler_epochs=25 \
  $common hydra.run.dir=$OUT/gaea_erm > $OUT/gaea.log 2>&1 &
wait
for d in darts_bilevel gaea_erm; do cp $OUT/$d/metrics.jsonl $OUT/${d}_metrics.jsonl 2>/dev/null; rm -rf $OUT/$d; done
grep -h "^epoch\|error" $OUT/darts.log $OUT/gaea.log
