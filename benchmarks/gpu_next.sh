#!/usr/bin/env bash
# Prepared 2026-12-02 (eighth session) for the next session's first device calls.
# (a) The CUDA checks not run since the seventh session's changes: the supernet/eval-network check, the
#     search-steps check, the kernels of mixing, BN and max pool; then the masked GDAS GPU tests (they
#     have not run with HeldBackStats: graph-replayed masked steps against eager selected ones).
# (b) Kernel profiles at the defaults: the evaluation step (0.0400 s with the first route rule; where do
#     the rest of the ~40 ms go now) and NB201 GDAS after the multi-tensor FreezeUnselected.
# (c) The bench of every workload at the defaults: NB201 GDAS with the bulk BN holding back (HeldBackStats,
#     never run on a GPU; 0.0225-0.0230 s before it) and pcdarts_search (cut off in gpu_session8c.sh).
# Up to ~9 min each on a cold machine: run as separate calls ("bash benchmarks/gpu_next.sh a", ...).
set -u
source benchmarks/device_env.sh
part=${1:-all}
if [ "$part" = a ] || [ "$part" = all ]; then
stamp depthwise-cuda-checks
timeout 300 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_depthwise.py -k "cuda" 2>&1 \
  | grep -E "passed|failed|^E " | head -8
stamp hard-forward-gpu
timeout 80 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_hard_forward.py 2>&1 \
  | grep -E "passed|failed|^E " | head -6
fi
if [ "$part" = b ] || [ "$part" = all ]; then
stamp eval-profile
ROWS=45 timeout 240 python3 benchmarks/profile_step.py --eval >$OUT/prof_eval.txt 2>&1; echo "profile rc $?"
grep -m1 "kernels per step" $OUT/prof_eval.txt
stamp profile-nb201-gdas
ROWS=45 timeout 100 python3 benchmarks/profile_step.py method=gdas search_space=nb201 search_space.preset=paper \
  search.batch_size=64 >$OUT/prof_nb201_gdas.txt 2>&1; echo "profile rc $?"
grep -m1 "kernels per step" $OUT/prof_nb201_gdas.txt
fi
if [ "$part" = c ] || [ "$part" = all ]; then
stamp bench-defaults
timeout 320 python3 -m nas_cli.bench --steps 10 --warmup 4 \
  --workloads eval_step nb201_gdas nb201_gaea_darts gaea_pcdarts_search pcdarts_search \
  --json $OUT/defaults.json >$OUT/bench.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/defaults.json | cut -c1-210
fi
stamp end
