#!/usr/bin/env bash
# Prepared for a 2-GPU device call (kind nvidia-h200-x2; not yet run): data-parallel scaling of a real
# CIFAR-10 GAEA PC-DARTS search, 1 process vs 2 processes with synchronised BN (runtime.sync_bn=true, the
# default) and with per-rank BN (plain DDP). Reports per-epoch time and the curves side by side; with
# synchronised BN the 2-process curves should follow the 1-process ones. Needs .whl and .devdata.
set -u
source benchmarks/device_env.sh
python3 .devdata/prepare.py .devdata >/dev/null
S="method=gaea_pcdarts dataset=cifar10 dataset.root=.devdata search.epochs=3 objective.warmup_epochs=1 search.log_every=1000"
TR="python3 -m torch.distributed.run --standalone --nproc_per_node 2 -m nas_cli"
stamp one-gpu;   timeout 150 python3 -m nas_cli $S hydra.run.dir=$OUT/ddp1 >$OUT/log_ddp.txt 2>&1
stamp sync;      timeout 150 $TR $S hydra.run.dir=$OUT/ddp2_sync >>$OUT/log_ddp.txt 2>&1
stamp plain;     timeout 150 $TR $S runtime.sync_bn=false hydra.run.dir=$OUT/ddp2_plain >>$OUT/log_ddp.txt 2>&1
stamp end
find $OUT -name checkpoint.pt -delete
python3 benchmarks/metrics_table.py one=$OUT/ddp1 sync=$OUT/ddp2_sync plain=$OUT/ddp2_plain
grep -iE "error|Traceback" $OUT/log_ddp.txt | head -5
