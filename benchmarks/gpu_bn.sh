#!/usr/bin/env bash
# One device call: BN kernel variants, graph search step per BN implementation, NB201 graph step, profile.
set -u
source benchmarks/device_env.sh
timeout 200 python3 -m pytest -q tests/test_cuda_graphs.py tests/test_batchnorm.py -p no:cacheprovider 2>&1 | tail -4
timeout 100 python3 benchmarks/bn_variants.py
for bn in native cudnn function; do
  timeout 100 python3 benchmarks/search_step.py --methods gaea_pcdarts --batch 256 --steps 10 --warmup 4 --set runtime.batchnorm=$bn --json $OUT/search_$bn.json 2>&1 | grep gaea
done
timeout 100 python3 benchmarks/search_step.py --space nb201 --methods gaea_darts gdas --batch 64 --steps 15 --warmup 4 --json $OUT/nb201.json 2>&1 | grep -E "gaea|gdas"
timeout 100 python3 benchmarks/search_step.py --space nb201 --methods gaea_darts gdas --batch 64 --steps 15 --warmup 4 --set runtime.batchnorm=native --json $OUT/nb201_native.json 2>&1 | grep -E "gaea|gdas"
timeout 120 python3 benchmarks/profile_step.py method=gaea_pcdarts search.batch_size=256 runtime.cuda_graphs=false > $OUT/profile_function.txt 2>&1; head -30 $OUT/profile_function.txt | cut -c1-70,150-260
