#!/usr/bin/env bash
# 2026-12-03, tenth session, second call.  gpu_session10a.sh measured the 1x1 convs as matmuls at 0.0535 s
# (0.0400 s as convs) -- with full-fp32 GEMMs, since PyTorch allows TF32 for convolutions but not for
# matmuls; the GEMM-autotuned variant did not finish compiling within 250 s.  Here: the matmul variant at
# the convs' precision (TF32, spaces/conv1x1.py match_conv_precision), and the conv default with Inductor's
# coordinate-descent tuning of its generated BN/ReLU kernels.
set -u
source benchmarks/device_env.sh
stamp eval-1x1-matmul-tf32
timeout 200 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step runtime.conv1x1=matmul \
  --json $OUT/eval_mm_tf32.json >$OUT/eval_mm_tf32.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/eval_mm_tf32.json | cut -c1-210
stamp eval-cd-tuning
timeout 260 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step \
  +runtime.compile_options.coordinate_descent_tuning=true \
  --json $OUT/eval_cd.json >$OUT/eval_cd.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/eval_cd.json | cut -c1-210
stamp end
