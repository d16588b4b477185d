#!/usr/bin/env bash
# 2026-12-02 (fourth session), first call: the search step after the two routing changes of the
# third session (strided depthwise forward and 1x1 weight gradient native), the compiled evaluation
# step with the Triton depthwise kernels, kernel profiles of the NB201 / eval / search steps, and two
# full-data CIFAR-10 epochs (the measured per-epoch time). Needs .whl and .devdata.
set -u
source benchmarks/device_env.sh
python3 .devdata/prepare.py .devdata >/dev/null
stamp bench
B="python3 -m nas_cli.bench --steps 10 --warmup 4"
timeout 90 $B --workloads gaea_pcdarts_search --json $OUT/s_auto.json >$OUT/log_bench.txt 2>&1
timeout 120 $B --workloads eval_step runtime.depthwise=triton --json $OUT/e_ct.json >>$OUT/log_bench.txt 2>&1
timeout 120 $B --workloads eval_step --json $OUT/e_cn.json >>$OUT/log_bench.txt 2>&1
for f in $OUT/s_auto.json $OUT/e_ct.json $OUT/e_cn.json; do python3 benchmarks/summarize.py $f | cut -c1-250; done
stamp profiles
ROWS=30 timeout 60 python3 benchmarks/profile_step.py method=gaea_darts search_space=nb201 search_space.preset=paper search.batch_size=64 >$OUT/prof_nb201.txt 2>&1
ROWS=30 timeout 150 python3 benchmarks/profile_step.py --eval >$OUT/prof_eval.txt 2>&1
ROWS=40 timeout 60 python3 benchmarks/profile_step.py method=gaea_pcdarts search.batch_size=256 >$OUT/prof_search.txt 2>&1
grep -h "kernels per step" $OUT/prof_*.txt
stamp full-epochs
timeout 120 python3 -m nas_cli method=gaea_pcdarts dataset=cifar10 dataset.root=.devdata search.epochs=2 \
  objective.warmup_epochs=0 search.log_every=1000 hydra.run.dir=$OUT/search_full >$OUT/log_full.txt 2>&1
stamp end
find $OUT -name checkpoint.pt -delete
python3 benchmarks/metrics_table.py full=$OUT/search_full 2>&1 | tail -8
for f in $OUT/log_*.txt; do echo "== $f"; grep -iE "error|Traceback" $f | head -5; done
