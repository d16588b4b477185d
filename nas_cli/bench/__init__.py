"""``nas-bench``: step-time / throughput / peak-memory benchmark of the training steps.

Workloads (nas_cli/bench/workloads.py): ``pcdarts_search``, ``gaea_pcdarts_search`` (DARTS-space
supernet C=16 L=8, 256 + 256 images, first-order arch step + weight step), ``eval_step``
(C=36 L=20 evaluation network, aux 0.4, drop-path 0.3, cutout 16, batch 128), ``nb201_gaea_darts``
and ``nb201_gdas`` (NAS-Bench-201, batch 64).  Each is built through the seams the real loops use
(``build_run`` + ``build_search_stepper``; ``EvalTrainer.train_step``) with batches drawn from the
run's own GPU-resident ``BatchStream``, timed over synchronised steps after a warm-up, by default
in a fresh subprocess per workload.  Modules: ``workloads`` (what), ``prepare`` (build via the
seams), ``measure`` (clock + memory), ``runner`` (in-process / subprocess), ``table`` (output),
``cli`` (arguments).

JSON rows (``--json``): workload, variant, device, sizes, steps, warmup, step_s_median, step_s_mean,
step_s_min, step_s_max, step_times_s, images_per_step (weight + architecture batch for searches),
images_per_s (images_per_step / median), peak_mem_gb and peak_mem_kind (``cuda_max_allocated`` or
``cpu_peak_rss_delta``; null where unmeasurable), target_device/target_step_s/target_mem_gb,
precision, channels_last, fused, cuda_graphs, stepper, overrides, error (null unless it failed),
speedup_vs_eager (``--compare``).
"""

from nas_cli.bench.cli import cli, main

__all__ = ["cli", "main"]
