"""Kernel-level profile of one search step: where the GPU time goes and how many kernels run.

    python benchmarks/profile_step.py method=gaea_pcdarts search.batch_size=256
    python benchmarks/profile_step.py method=gaea_pcdarts runtime.fused=false   # the per-edge reference
    python benchmarks/profile_step.py --eval                                     # evaluation step, paper size

Prints torch.profiler's top kernels by device time and the number of kernel launches per step.
"""

from __future__ import annotations

import os
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
    print_categories(kernels, steps)
    table = events.table(sort_by="self_cuda_time_total", row_limit=int(os.environ.get("ROWS", "60")), max_name_column_width=70)
    if os.environ.get("PROFILE_TABLE"):  # the long table to a file, so a terminal tail keeps the summary
        Path(os.environ["PROFILE_TABLE"]).write_text(table)
    else:
        print(table)


# Kernel families by name, first match wins: which kind of work the device time goes to, so a lever can be
# sized before it is built (a conv family's share is what a faster conv could save at most).
CATEGORIES = (
    ("inductor reduction (BN statistics, sums)", ("triton_red", "triton_per")),
    ("inductor pointwise (BN apply, ReLU, add, cat)", ("triton_poi",)),
    ("project Triton kernels (depthwise, 1x1, BN)", ("^_",)),  # ^: a name prefix (_gather_kernel, ...)
    ("cuDNN depthwise conv", ("depthwise",)),
    ("cuDNN conv dgrad", ("dgrad",)),
    ("cuDNN conv wgrad", ("wgrad",)),
    ("cuDNN conv fprop", ("fprop", "implicit_gemm", "conv")),
    ("gemm (1x1 as matmul, linear)", ("gemm", "cutlass", "sm90_xmma")),
    ("optimizer (foreach)", ("multi_tensor_apply",)),
    ("memset / memcpy", ("memset", "memcpy")),
)


def _matches(name: str, key: str) -> bool:
    return name.startswith(key[1:]) if key.startswith("^") else key in name


def category_sums(kernels: list, steps: int) -> dict[str, tuple[float, float]]:
    """Device ms and kernel count per family, per step (profiler events of ``steps`` steps)."""
    sums: dict[str, tuple[float, float]] = {}
    for e in kernels:
        name = e.key.lower()
        cat = next((c for c, keys in CATEGORIES if any(_matches(name, k) for k in keys)), "other")
        ms, count = sums.get(cat, (0.0, 0.0))
        sums[cat] = (ms + e.self_device_time_total / steps / 1e3, count + e.count / steps)
    return sums


def print_categories(kernels: list, steps: int) -> None:
    for cat, (ms, count) in sorted(category_sums(kernels, steps).items(), key=lambda kv: -kv[1][0]):
        print(f"  {cat:<45} {ms:7.2f} ms  {count:6.0f} kernels")

if __name__ == "__main__":
    main()
