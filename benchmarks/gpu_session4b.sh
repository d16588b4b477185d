#!/usr/bin/env bash
# 2026-12-02 (fourth session), second call: GPU tests of the masked one-hot forward (graph-replayed
# GDAS) and of the custom ops' fake kernels; NB201 GDAS step masked+graph vs selected+eager; the
# compiled evaluation step with the Triton depthwise kernels (failed in the first call); short real
# CIFAR-10 NB201 GDAS searches, masked vs selected (same math: the curves must agree).
set -u
source benchmarks/device_env.sh
python3 .devdata/prepare.py .devdata >/dev/null
stamp tests
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_hard_forward.py tests/test_depthwise.py -k "cuda or graph or tau" 2>&1 | tail -4
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_cuda_graphs.py -k "cuda or graph" 2>&1 | tail -2
stamp bench
B="python3 -m nas_cli.bench --steps 10 --warmup 4"
timeout 60 $B --workloads nb201_gdas --json $OUT/g_masked.json >$OUT/log_bench.txt 2>&1
timeout 60 $B --workloads nb201_gdas runtime.hard_forward=selected --json $OUT/g_selected.json >>$OUT/log_bench.txt 2>&1
timeout 200 $B --workloads eval_step runtime.depthwise=triton --json $OUT/e_ct.json >>$OUT/log_bench.txt 2>&1
for f in $OUT/g_masked.json $OUT/g_selected.json $OUT/e_ct.json; do python3 benchmarks/summarize.py $f | cut -c1-250; done
stamp real-gdas
S="method=gdas search_space=nb201 dataset=cifar10 dataset.root=.devdata dataset.limit_train=10000 search.epochs=4 search.log_every=1000"
timeout 60 python3 -m nas_cli $S hydra.run.dir=$OUT/gdas_masked >$OUT/log_gdas.txt 2>&1
timeout 90 python3 -m nas_cli $S runtime.hard_forward=selected hydra.run.dir=$OUT/gdas_selected >>$OUT/log_gdas.txt 2>&1
stamp end
find $OUT -name checkpoint.pt -delete
python3 benchmarks/metrics_table.py masked=$OUT/gdas_masked selected=$OUT/gdas_selected 2>&1 | tail -10
grep -h "step \|search time" $OUT/log_gdas.txt | cut -c1-120
for f in $OUT/log_*.txt; do echo "== $f"; grep -iE "error|Traceback" $f | head -5; done
