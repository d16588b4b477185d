"""Kernel-level profile of one search step: where the GPU time goes and how many kernels run.

    python benchmarks/profile_step.py method=gaea_pcdarts search.batch_size=256
    python benchmarks/profile_step.py method=gaea_pcdarts runtime.fused=false   # the per-edge reference
    python benchmarks/profile_step.py --eval                                     # evaluation step, paper size

Prints torch.profiler's top kernels by device time and the number of kernel launches per step.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from torch.profiler import ProfilerActivity, profile

    from benchmarks.search_step import compose
    from nas_cli.bench.prepare import prepare_eval, prepare_search
    from nas_cli.bench.workloads import WORKLOADS

    args = sys.argv[1:]
    if args[:1] == ["--eval"]:  # the eval_step workload at paper size (nas-bench --full's settings)
        w = WORKLOADS.get("eval_step")
        overrides = [*w.overrides, *w.full, *w.data_full, *args[1:]]
        prep = prepare_eval(compose(overrides), "GAEA_PCDARTS_cifar10")
    else:
        overrides = ["objective.warmup_epochs=0", "dataset.num_train=4096", "dataset.num_test=256", *args]
        prep = prepare_search(compose(overrides), "")  # the step nas-bench times: data, stepper, arch step
    for _ in range(4):
        prep.step()
    torch.cuda.synchronize()
    steps = 2
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            prep.step()
        torch.cuda.synchronize()
    events = prof.key_averages()
    kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
    n = sum(e.count for e in kernels) / steps
    total = sum(e.self_device_time_total for e in kernels) / steps / 1e3
    print(f"stepper {prep.stepper}: {n:.0f} kernels per step, {total:.1f} ms device time per step")
    print(events.table(sort_by="self_cuda_time_total", row_limit=int(__import__("os").environ.get("ROWS", "60")), max_name_column_width=70))


if __name__ == "__main__":
    main()
