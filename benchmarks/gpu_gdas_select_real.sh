#!/usr/bin/env bash
# Sixteenth session: a short real CIFAR-10 NB201 GDAS search (paper preset, full NB201 25k/25k split,
# first ${E:-4} epochs of the 250-epoch schedule) with the selected-conv forward (runtime.kernel_switches.select_convs,
# the default) and without it, one after the other with the same seed: the accuracy and entropy per
# epoch, and the epoch times.  Needs .whl and .devdata (../shared/data/cifar10 copied).
set -u
source benchmarks/device_env.sh
python3 .devdata/prepare.py .devdata >/dev/null
common="experiment=paper/nb201_gdas dataset=cifar10 dataset.root=.devdata search.epochs=${E:-4} search.scheduler_epochs=250 search.log_every=1000 seed=0"
for sel in True False; do
  stamp "select_convs=$sel"
  timeout ${T:-200} python3 -m nas_cli.cli $common +runtime.kernel_switches.select_convs=$sel \
    hydra.run.dir=$OUT/select_$sel > $OUT/select_$sel.log 2>&1; echo "rc $?"
  cp $OUT/select_$sel/metrics.jsonl $OUT/select_${sel}_metrics.jsonl 2>/dev/null
  cp $OUT/select_$sel/genotype*.json $OUT/ 2>/dev/null
  grep -h "^epoch\|rror\|genotype" $OUT/select_$sel.log | tail -12
  rm -rf $OUT/select_$sel
done
stamp end
