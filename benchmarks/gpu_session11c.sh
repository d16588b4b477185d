#!/usr/bin/env bash
# 2026-12-03, eleventh session (the first two attempts of gpu_session11a.sh got no machine / lost it).
# (1) CUDA checks of the weighted-sum kernels with the per-destination bias (the masked NB201 forward's
#     rest terms), the NB201 supernet with Triton kernels, and opcheck.
# (2) The NB201 steps after that change (GDAS 0.0194 s, GAEA DARTS 0.0176 s in the ninth session).
# (3) A kernel profile of the NB201 GDAS step.
# (4) The evaluation step with bf16 autocast (compiled, channels_last, routed depthwise kernels).
set -u
source benchmarks/device_env.sh
stamp cuda-checks
timeout 170 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_depthwise.py \
  -k "cuda and (mixing or nb201 or opcheck)" 2>&1 | grep -E "passed|failed|^E " | head -8
stamp bench-nb201
timeout 100 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads nb201_gdas nb201_gaea_darts \
  --json $OUT/nb201.json >$OUT/bench_nb201.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/nb201.json | cut -c1-210
stamp profile-nb201-gdas
ROWS=70 timeout 80 python3 benchmarks/profile_step.py method=gdas search_space=nb201 search_space.preset=paper \
  search.batch_size=64 >$OUT/prof_nb201_gdas.txt 2>&1; echo "profile rc $?"
grep -m1 "kernels per step" $OUT/prof_nb201_gdas.txt
stamp eval-bf16
timeout 230 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step runtime.precision=bf16 \
  --json $OUT/eval_bf16.json >$OUT/eval_bf16.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/eval_bf16.json | cut -c1-210
stamp end
