#!/usr/bin/env bash
# Prepared 2026-12-03 (tenth session) for the next session's device calls; each part is one call of up to
# ~10 min on a cold machine ("bash benchmarks/gpu_next.sh a", ...).
# (a) The dense 1x1 convs per shape and direction, cuDNN conv vs the matmuls of runtime.conv1x1=matmul
#     vs the Triton kernels of runtime.conv1x1=triton (TF32 all; the Triton ones never ran on a GPU):
#     where the matmul variant lost 1.6 ms per step (0.0416 s vs 0.0400 s); then the Inductor GPU tests
#     (incl. the matmul and triton variants) and the CUDA kernel checks (incl. dense1x1 and opcheck).
# (b) [measured in the eleventh session: runtime.conv1x1=wgrad_matmul gave 0.0400 s, the same as the convs;
#     the part is kept to re-check it beside the default in one call]
# (c) [ran in the sixteenth session: 0.0396 s (min 0.0395 s), 355 s warm-up; the default measured 0.0400 s in the ninth] The conv default with Inductor's coordinate-descent tuning (runtime.compile_options): it did not
#     finish compiling within 260 s in gpu_session10b.sh.
# (d) The matmul variant with Inductor's GEMM autotuning: it did not finish compiling within 250 s in
#     gpu_session10a.sh.
# (f) [ran in the twelfth session: checks passed, faster, ENABLED now on] The merged NB201 conv weight kernel (written in the eleventh
#     session, whose CUDA call was lost): the CUDA checks, then the NB201 steps with it off and on. If the
#     checks pass and it is faster, set conv_merge.ENABLED = True.
# (e) [ran in the thirteenth session: fp32 4,807 kernels / 37.3 ms, bf16 5,559 / 35.4 ms per step] Kernel profiles of the compiled evaluation step in bf16 and fp32 (eleventh session: bf16 gave only
#     0.0385 s against 0.0400 s, with half the memory traffic of the activations; where does it go?).
# (g) [ran in the thirteenth session's first call: checks passed] twelfth session: if benchmarks/gpu_session12c.sh never ran, run it first:
#     CUDA checks of the shared tile / window-sum helpers of the pooling and source-input kernels, then nas-bench of the search
#     workloads with the merged-weight and source-input kernels on ("bash benchmarks/gpu_session12c.sh").
# (h) [ran in the fifteenth session: BN check passed; GDAS 0.0155 s] thirteenth session: run first. The CUDA BN check after the channels_last BN kernels' tile set-up moved into
#     a shared Triton helper (_nhwc_tile; same arithmetic, interpreter-checked only), then nas-bench of the four
#     search workloads with the NHWC route and the split statistics on (the session's last nas-bench, 0.0154 s
#     GDAS, predates the split; its first call's 110 s limit stopped pcdarts_search, so this one allows 400 s).
# (i) [ran in the fifteenth session: check passed; bf16 + triton depthwise 0.0351 s] fourteenth session: the depthwise Triton kernels under bf16. runtime.depthwise=auto keeps cuDNN for bf16
#     (never measured with the kernels), so the thirteenth session's bf16 profile ran cuDNN's grouped direct
#     kernels for the dilated/5x5 convs (~8 ms per step). The CUDA bf16 kernel check (written this session,
#     interpreter-checked only), then nas-bench of the eval step in bf16 with runtime.depthwise=triton (the
#     eleventh session's bf16 step with native depthwise: 0.0385 s), then the per-conv routes in bf16.
# (j) [ran: checks passed, bf16 defaults 0.0338 s] fifteenth session: part i measured bf16 with runtime.depthwise=triton at 0.0351 s (vs 0.0385 s native),
#     so auto now takes the kernels for the bf16 channels_last network, with a bf16 route rule (cuDNN for
#     every undilated conv). The CUDA checks of the rule and of the trainer's choice, then nas-bench of the
#     eval step in bf16 with the defaults.
# (k) [ran: checks passed; GDAS A/B ~0.1 ms; nas-bench 0.0148 s] fifteenth session: two fewer-kernel changes to the NB201 steps (GDAS was 0.0155 s against 0.015 s):
#     the merged conv weight's gradient split into contiguous per-op gradients by one kernel (autograd
#     copied the strided views, ~90 copies per step; conv_merge.UNMERGE_KERNEL) and all BN-update masks of
#     a masked forward from one gather (~48 tiny kernels per step; nb201_fused.OWNER_MASKS_AT_ONCE). The
#     CUDA checks, both switched off and on together in one process, then nas-bench of the NB201 steps.
# (l) [ran: 0.0155 s, 0.0151 s] fifteenth session, the last device minutes: part k's nas-bench gave NB201 GDAS 0.0148 s where the
#     session's first call gave 0.0155 s (the A/B in k moved it by only ~0.1 ms), so two more nas-bench
#     runs of NB201 GDAS on another machine start, to see the spread between calls.
# (m) [ran: checks passed; GDAS A/B 0.0155 -> 0.0125 s; nas-bench GDAS 0.0124 s] sixteenth session: the selected-conv forward (nb201_fused.SELECT_CONVS): a masked training forward runs
#     only the conv op each edge selected, one 3x3 weight per edge (conv_merge.select_3x3, new kernels,
#     interpreter-checked only), so the merged convs, their BN and the weighted sums' conv rows are half as
#     wide.  The CUDA checks (kernels, opcheck, NB201 supernet, graph-replayed masked GDAS against eager
#     selected), GDAS with it off and on in one process, then nas-bench of the NB201 steps.
# (o) [ran: test passed; compile_scope=model still compiling after 210 s, not measured] sixteenth session, the last device minutes: the GPU test of the selected convs against the full masked
#     form (graph-replayed, product kernels; written after part m), then the evaluation step compiled as
#     one graph (runtime.compile_scope=model; never measured: Inductor could fuse across cell boundaries).
# (p) seventeenth session: the merge and select kernels' backward twins as one kernel
#     (conv_merge._split_grad_kernel, interpreter-checked only): the CUDA checks (kernels, opcheck, NB201
#     supernet, graph-replayed masked GDAS), nas-bench of the NB201 steps, then the evaluation step with the
#     defaults (the baseline for part q, same machine kind).
# (q) seventeenth session: the evaluation step with Inductor's horizontal fusion of independent kernels
#     (combo_kernels) and with aggressive_fusion, each through runtime.compile_options.
# (r) seventeenth session: combo_kernels is now the evaluation network's default (EVAL_COMPILE_OPTIONS):
#     the Inductor GPU tests with it, then the step with it and without it in one call.
set -u
source benchmarks/device_env.sh
# parts m and p: the CUDA checks of the NB201 kernels and graph-replayed masked steps, then the NB201 steps
nb201_cuda_checks() {
  stamp cuda-checks
  timeout 200 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_depthwise.py \
    -k "cuda and (mixing or nb201 or opcheck)" 2>&1 | grep -E "passed|failed|^E " | head -8
  timeout 150 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_hard_forward.py -k "graph" 2>&1 \
    | grep -E "passed|failed|^E " | head -8
}
bench_nb201() {
  stamp bench-nb201
  timeout 150 python3 -m nas_cli.bench --steps 30 --warmup 4 --workloads nb201_gdas nb201_gaea_darts \
    --json $OUT/nb201.json >$OUT/bench_nb201.log 2>&1; echo "bench rc $?"
  python3 benchmarks/summarize.py $OUT/nb201.json | cut -c1-210
}
# parts w, y and y2: the uncompiled evaluation step with runtime.branch_streams false and auto in one call
bench_uncompiled_streams() {
  for st in false auto; do
    stamp eval-uncompiled-streams-$st
    timeout 100 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step runtime.compile=false \
      runtime.branch_streams=$st --json $OUT/eval_uncompiled_streams_$st.json >$OUT/eval_uncompiled_streams_$st.log 2>&1
    echo "bench rc $?"; python3 benchmarks/summarize.py $OUT/eval_uncompiled_streams_$st.json 2>&1 | cut -c1-150
  done
}
part=${1:-a}
if [ "$part" = h ]; then
stamp cuda-bn-check
timeout 70 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_depthwise.py \
  -k "cuda and (batchnorm or nb201)" 2>&1 | grep -E "passed|failed|^E " | head -6
stamp bench-search
timeout 400 python3 -m nas_cli.bench --steps 10 --warmup 4 \
  --workloads nb201_gdas nb201_gaea_darts pcdarts_search gaea_pcdarts_search \
  --json $OUT/search.json >$OUT/bench_search.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/search.json | cut -c1-210
fi
if [ "$part" = i ]; then
stamp cuda-bf16-check
timeout 70 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_depthwise.py -k "cuda and bf16" 2>&1 \
  | grep -E "passed|failed|^E " | head -6
stamp eval-bf16-triton-depthwise
timeout 270 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step runtime.precision=bf16 \
  runtime.depthwise=triton --json $OUT/eval_bf16_triton_dw.json >$OUT/eval_bf16_triton_dw.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/eval_bf16_triton_dw.json | cut -c1-210
stamp routes-bf16
timeout 200 python3 benchmarks/eval_convs.py --routes --bf16 2>&1 | tail -16
fi
if [ "$part" = j ]; then
stamp cuda-bf16-route-checks
timeout 120 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_depthwise.py tests/test_compile.py \
  -k "(cuda and bf16) or bf16_too" 2>&1 | grep -E "passed|failed|^E " | head -6
stamp eval-bf16-defaults
timeout 300 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step runtime.precision=bf16 \
  --json $OUT/eval_bf16.json >$OUT/eval_bf16.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/eval_bf16.json | cut -c1-210
fi
if [ "$part" = k ]; then
stamp cuda-checks
timeout 200 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_depthwise.py tests/test_hard_forward.py \
  -k "(cuda and (mixing or opcheck or nb201)) or graph_replayed_masked" 2>&1 | grep -E "passed|failed|^E " | head -8
stamp nb201-unmerge-owner-masks
timeout 200 python3 benchmarks/nb201_merge.py --flag conv_unmerge owner_masks --steps 30 --methods gdas gaea_darts \
  2>&1 | grep "per step"
stamp bench-nb201
timeout 150 python3 -m nas_cli.bench --steps 20 --warmup 4 --workloads nb201_gdas nb201_gaea_darts \
  --json $OUT/nb201.json >$OUT/bench_nb201.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/nb201.json | cut -c1-210
stamp end
fi
if [ "$part" = l ]; then
for round in 1 2; do
stamp "bench-gdas-$round"
timeout 90 python3 -m nas_cli.bench --steps 30 --warmup 4 --workloads nb201_gdas --json $OUT/gdas$round.json \
  >$OUT/gdas$round.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/gdas$round.json | cut -c1-150
done
stamp end
fi
if [ "$part" = a ]; then
stamp conv1x1-per-shape
timeout 150 python3 benchmarks/eval_convs.py --conv1x1 2>&1 | tail -14
stamp inductor-test
timeout 200 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_compile.py -k "inductor" 2>&1 \
  | grep -E "passed|failed|^E " | head -6
stamp cuda-checks
timeout 200 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_depthwise.py -k "cuda" 2>&1 \
  | grep -E "passed|failed|^E " | head -8
fi
if [ "$part" = b ]; then
stamp eval-wgrad-matmul
timeout 270 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step runtime.conv1x1=wgrad_matmul \
  --json $OUT/eval_wgrad_mm.json >$OUT/eval_wgrad_mm.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/eval_wgrad_mm.json | cut -c1-210
stamp eval-defaults
timeout 270 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step \
  --json $OUT/eval_defaults.json >$OUT/eval_defaults.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/eval_defaults.json | cut -c1-210
fi
if [ "$part" = c ]; then
stamp eval-cd-tuning
timeout 560 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step \
  +runtime.compile_options.coordinate_descent_tuning=true \
  --json $OUT/eval_cd.json >$OUT/eval_cd.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/eval_cd.json | cut -c1-210
fi
if [ "$part" = d ]; then
stamp eval-1x1-matmul-autotune
timeout 560 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step runtime.conv1x1=matmul \
  +runtime.compile_options.max_autotune_gemm=true \
  --json $OUT/eval_mm_tuned.json >$OUT/eval_mm_tuned.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/eval_mm_tuned.json | cut -c1-210
fi
if [ "$part" = f ]; then
stamp cuda-checks
timeout 150 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_depthwise.py \
  -k "cuda and (mixing or nb201 or opcheck)" 2>&1 | grep -E "passed|failed|^E " | head -8
stamp nb201-merge
timeout 300 python3 benchmarks/nb201_merge.py --steps 30 2>&1 | grep "per step"
fi
if [ "$part" = e ]; then
for p in bf16 fp32; do
  stamp profile-eval-$p
  ROWS=50 timeout 260 python3 benchmarks/profile_step.py --eval runtime.precision=$p >$OUT/prof_eval_$p.txt 2>&1
  echo "profile rc $?"; grep -m1 "kernels per step" $OUT/prof_eval_$p.txt
done
fi
if [ "$part" = m ]; then
nb201_cuda_checks
stamp nb201-select-convs
timeout 240 python3 benchmarks/nb201_merge.py --flag select_convs --methods gdas --steps 30 2>&1 | grep "per step"
bench_nb201
fi
if [ "$part" = o ]; then
stamp gpu-select-test
timeout 150 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_hard_forward.py \
  -k "selected_convs_match or graph_replayed_masked" 2>&1 | grep -E "passed|failed|^E " | head -8
stamp eval-compile-model
timeout ${T:-320} python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step runtime.compile_scope=model \
  --json $OUT/eval_model.json >$OUT/eval_model.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/eval_model.json 2>&1 | cut -c1-210; tail -3 $OUT/eval_model.log
fi
if [ "$part" = p ]; then
nb201_cuda_checks
bench_nb201
stamp eval-defaults
timeout ${T:-200} python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step \
  --json $OUT/eval_defaults.json >$OUT/eval_defaults.log 2>&1; echo "bench rc $?"
python3 benchmarks/summarize.py $OUT/eval_defaults.json 2>&1 | cut -c1-210
fi
if [ "$part" = q ]; then
for opt in combo_kernels aggressive_fusion; do
  stamp eval-$opt
  timeout ${T:-270} python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step \
    +runtime.compile_options.$opt=true --json $OUT/eval_$opt.json >$OUT/eval_$opt.log 2>&1; echo "bench rc $?"
  python3 benchmarks/summarize.py $OUT/eval_$opt.json 2>&1 | cut -c1-210; tail -2 $OUT/eval_$opt.log
done
fi
if [ "$part" = r ]; then
stamp inductor-tests
timeout 120 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_compile.py -k "(gpu and auto-auto) or bf16_too" 2>&1 \
  | grep -E "passed|failed|^E " | head -8
for combo in true false; do
  stamp eval-combo-$combo
  timeout ${T:-200} python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step \
    +runtime.compile_options.combo_kernels=$combo --json $OUT/eval_combo_$combo.json >$OUT/eval_combo_$combo.log 2>&1
  echo "bench rc $?"; python3 benchmarks/summarize.py $OUT/eval_combo_$combo.json 2>&1 | cut -c1-150
done
fi
if [ "$part" = s ]; then
# eighteenth session: runtime.branch_streams (each node's two branches on two CUDA streams), eager graph-replayed
# then compiled, against the default; then its GPU tests
for st in false true; do
  stamp eval-eager-streams-$st
  timeout 110 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step runtime.compile=false \
    runtime.branch_streams=$st --json $OUT/eval_eager_streams_$st.json >$OUT/eval_eager_streams_$st.log 2>&1
  echo "bench rc $?"; python3 benchmarks/summarize.py $OUT/eval_eager_streams_$st.json 2>&1 | cut -c1-150; tail -2 $OUT/eval_eager_streams_$st.log
done
stamp eval-compiled-streams
timeout ${T:-230} python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step runtime.branch_streams=true \
  --json $OUT/eval_streams_true.json >$OUT/eval_streams_true.log 2>&1
echo "bench rc $?"; python3 benchmarks/summarize.py $OUT/eval_streams_true.json 2>&1 | cut -c1-150; tail -4 $OUT/eval_streams_true.log
stamp stream-tests
timeout 150 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_branch_streams.py 2>&1 \
  | grep -E "passed|failed|^E " | head -12
fi
if [ "$part" = t ]; then
# eighteenth session: part s gave eager 0.0683 -> 0.0589 s with two streams, and Inductor failed on streams inside
# a compiled cell (no fake impl for streams::sync_dealloc); so compile each branch (compile_scope=branches) and keep
# the cell's forks/joins eager
for st in true false; do
  stamp eval-branches-streams-$st
  timeout ${T:-200} python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step runtime.compile_scope=branches \
    runtime.branch_streams=$st --json $OUT/eval_branches_streams_$st.json >$OUT/eval_branches_streams_$st.log 2>&1
  echo "bench rc $?"; python3 benchmarks/summarize.py $OUT/eval_branches_streams_$st.json 2>&1 | cut -c1-150; tail -2 $OUT/eval_branches_streams_$st.log
done
stamp stream-tests
timeout 170 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_branch_streams.py 2>&1 \
  | grep -E "passed|failed|^E " | head -12
fi
if [ "$part" = u ]; then
# eighteenth session: why Inductor fails on streams inside a compiled cell (part s): tracebacks per variant
for v in "" refake nocombo aot_eager; do
  stamp debug-$v
  TORCHDYNAMO_VERBOSE=1 timeout 120 python3 benchmarks/cell_streams_debug.py $v 2>&1 | grep -v Warning | tail -50
done
fi
if [ "$part" = v ]; then
# eighteenth session: runtime.branch_streams=auto (on for uncompiled / per-branch-compiled graph-replayed steps):
# its GPU tests, the uncompiled step with the defaults, then the bf16 step with combo_kernels (never measured)
stamp stream-tests
timeout 170 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_branch_streams.py 2>&1 \
  | grep -E "passed|failed|^E " | head -12
stamp eval-uncompiled-defaults
timeout 110 python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step runtime.compile=false \
  --json $OUT/eval_uncompiled_defaults.json >$OUT/eval_uncompiled_defaults.log 2>&1
echo "bench rc $?"; python3 benchmarks/summarize.py $OUT/eval_uncompiled_defaults.json 2>&1 | cut -c1-150
stamp eval-bf16-combo
timeout ${T:-270} python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step runtime.precision=bf16 \
  --json $OUT/eval_bf16_combo.json >$OUT/eval_bf16_combo.log 2>&1
echo "bench rc $?"; python3 benchmarks/summarize.py $OUT/eval_bf16_combo.json 2>&1 | cut -c1-150
fi
if [ "$part" = w ]; then
# eighteenth session: the uncompiled step with runtime.branch_streams false and auto in one call
bench_uncompiled_streams
fi
if [ "$part" = x ]; then
# eighteenth session, last call: the fp32 default (compiled cells, one stream) after EvalCell's branch refactor,
# then Inductor's eval-step test against eager
stamp eval-defaults
timeout ${T:-200} python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step \
  --json $OUT/eval_defaults.json >$OUT/eval_defaults.log 2>&1
echo "bench rc $?"; python3 benchmarks/summarize.py $OUT/eval_defaults.json 2>&1 | cut -c1-150
stamp inductor-test
timeout 100 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_compile.py -k "gpu and auto-auto" 2>&1 \
  | grep -E "passed|failed|^E " | head -8
fi
if [ "$part" = y ]; then
# nineteenth session: EvalCell._pair launches each pair's first half on the main stream before the second on the
# side stream (drop-path masks drawn in one stream's order): the stream GPU tests (now with drop-path), the
# uncompiled step with one and two streams, then the compiled default (its Dynamo graphs lift their inputs in
# another order now; the same ops)
stamp stream-tests
timeout 200 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_branch_streams.py tests/test_preflight.py 2>&1 \
  | grep -E "passed|failed|^E " | head -12
bench_uncompiled_streams
stamp eval-defaults
timeout ${T:-220} python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step \
  --json $OUT/eval_defaults.json >$OUT/eval_defaults.log 2>&1
echo "bench rc $?"; python3 benchmarks/summarize.py $OUT/eval_defaults.json 2>&1 | cut -c1-150
fi
if [ "$part" = z ]; then
# nineteenth session: the evaluation network compiled as one graph (runtime.compile_scope=model; part o stopped it
# still compiling after 210 s), with the whole call's time for its warm-up
stamp eval-model-scope
timeout ${T:-560} python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step runtime.compile_scope=model \
  --json $OUT/eval_model_scope.json >$OUT/eval_model_scope.log 2>&1
echo "bench rc $?"; python3 benchmarks/summarize.py $OUT/eval_model_scope.json 2>&1 | cut -c1-150; tail -3 $OUT/eval_model_scope.log
fi
if [ "$part" = y2 ]; then
# nineteenth session: part y measured main-first pairs at 0.0678 s against 0.0697 s with one stream (side-first
# gave 0.0605 against 0.0704 s in part w), so each pair's first half now goes on the side stream, launched first
# (one stream's order, so the same drop-path masks): the stream GPU tests, then the uncompiled step both ways
stamp stream-tests
timeout 200 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_branch_streams.py 2>&1 \
  | grep -E "passed|failed|^E " | head -12
bench_uncompiled_streams
fi
if [ "$part" = z2 ]; then
# nineteenth session: part z measured compile_scope=model at 0.0360 s (8.64 GB, 239 s warm-up) on another machine
# start than the default; here both in one call, then Inductor's GPU test of the model scope against eager
stamp inductor-test-model
timeout 150 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_compile.py -k "gpu and auto-auto-model" 2>&1 \
  | grep -E "passed|failed|^E " | head -8
for sc in cells model; do
  stamp eval-scope-$sc
  timeout ${T:-270} python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step runtime.compile_scope=$sc \
    --json $OUT/eval_scope_$sc.json >$OUT/eval_scope_$sc.log 2>&1
  echo "bench rc $?"; python3 benchmarks/summarize.py $OUT/eval_scope_$sc.json 2>&1 | cut -c1-150
done
fi
if [ "$part" = aa ]; then
# [ran in the twentieth session: 3,468 kernels, 34.5 ms per step; families in docs/speed.md] prepared in the
# nineteenth session for the next: the kernel profile of the evaluation step compiled whole
# (profile_step.py --eval takes nas-bench's full sizes, now compile_scope=model; 0.0362 s per step): where the
# remaining 11 ms to the 0.025 s target go
stamp profile-eval-model
PROFILE_TABLE=$OUT/profile_eval_model.txt ROWS=120 timeout ${T:-560} python3 benchmarks/profile_step.py --eval 2>&1 | grep -v Warning | tail -30
fi
if [ "$part" = ab ]; then
# [ran in the twentieth session: 0.0299 s, 4.43 GB, 252 s warm-up] prepared in the nineteenth session for
# the next: bf16 with the whole network compiled (bf16 per cell measured
# 0.0311 s in the eighteenth session; fp32 whole 0.0362 s against 0.0378 s per cell)
stamp eval-bf16-model
timeout ${T:-560} python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step runtime.precision=bf16 \
  --json $OUT/eval_bf16_model.json >$OUT/eval_bf16_model.log 2>&1
echo "bench rc $?"; python3 benchmarks/summarize.py $OUT/eval_bf16_model.json 2>&1 | cut -c1-150
fi
if [ "$part" = ac ]; then
# [ran: bf16 0.9 points lower at epoch 5, docs/speed.md] twentieth session: bf16 measured 0.0299 s per evaluation step with the whole network compiled (fp32 0.0362 s).
# Is its training the same as fp32's on real CIFAR-10? Full training set, 5-epoch schedule, two seeds per
# precision (the seed-to-seed spread is the yardstick), all four runs at once on the one GPU. Needs .devdata.
python3 .devdata/prepare.py .devdata >/dev/null
R="stage=retrain stage.arch=GAEA_PCDARTS_cifar10 stage.retrain_seeds=1 dataset=cifar10 dataset.root=.devdata train.epochs=${EPOCHS:-5} train.log_every=100000"
stamp real-eval-fp32-bf16
for prec in fp32 bf16; do for seed in 0 1; do
  timeout ${T:-500} python3 -m nas_cli $R seed=$seed runtime.precision=$prec hydra.run.dir=$OUT/eval_${prec}_s$seed \
    >$OUT/log_${prec}_s$seed.txt 2>&1 &
done; done
wait
stamp tables
find $OUT -name checkpoint.pt -delete
python3 benchmarks/metrics_table.py f32s0=$OUT/eval_fp32_s0 f32s1=$OUT/eval_fp32_s1 bf16s0=$OUT/eval_bf16_s0 bf16s1=$OUT/eval_bf16_s1
for f in $OUT/log_*.txt; do echo "== $f"; grep -iE "error|Traceback|test error" $f | head -5; done
fi
if [ "$part" = ad ]; then
# twentieth session [ran: one reduction over both dims 2.53 ms per step, slower than the 1.96 ms before;
# then the second sum written into the weight's layout, no copy: 1.84 ms, now the default] the NHWC depthwise
# weight gradient's finishing (the profile showed two ATen sums and a copy after each of its 88 calls per
# step): per-conv times of both forms (SKIP_TEST=1: only those), then the CUDA check of the NHWC kernels
stamp wgrad-finish
timeout ${T:-150} python3 benchmarks/eval_convs.py --wgrad-finish 2>&1 | grep -v Warn | tail -12
[ -n "${SKIP_TEST:-}" ] && { stamp end; exit 0; }
stamp nhwc-cuda-test
timeout 120 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/test_depthwise.py -k "nhwc_kernels_match_conv2d_cuda" 2>&1 | grep -E "passed|failed|^E " | head -6
fi
if [ "$part" = ae ]; then
# prepared in the twentieth session for the next: the compiled whole-network step with the weight gradient's
# new finishing (nhwc_weight_grad_direct_layout, 0.12 ms less summed over the step's calls in eval_convs.py)
# against the form before, in one call (each ~175-250 s of warm-up: give it the whole 600 s)
for v in true false; do
  stamp eval-direct-layout-$v
  timeout ${T:-280} python3 -m nas_cli.bench --steps 10 --warmup 4 --workloads eval_step \
    +runtime.kernel_switches.nhwc_weight_grad_direct_layout=$v --json $OUT/eval_direct_$v.json >$OUT/eval_direct_$v.log 2>&1
  echo "bench rc $?"; python3 benchmarks/summarize.py $OUT/eval_direct_$v.json 2>&1 | cut -c1-150
done
fi
stamp end
