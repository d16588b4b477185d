"""NB201 supernet forward+backward: reference vs fused cell (merged / unmerged 1x1 convs).

Counts the ATen ops of one forward+backward (a ``TorchDispatchMode`` counter: what reaches the
kernels, views included) and times the three variants *alternately* (median seconds), so load
changes on a shared machine hit all of them equally.  Mixture forward with random arch weights.

    python benchmarks/nb201_fused.py                                   # CPU: C=16, N=5, batch 2, 32x32
    python benchmarks/nb201_fused.py --device cuda --batch 64 --steps 50
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: ops that only re-describe memory (no kernel launch)
VIEW_OPS = {"view", "_unsafe_view", "reshape", "expand", "permute", "transpose", "t", "unsqueeze", "squeeze",
            "select", "slice", "split", "split_with_sizes", "as_strided", "alias", "detach", "unbind", "narrow"}


class OpCounter(TorchDispatchMode):
    """Counts every ATen op dispatched (forward and autograd backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))

    @property
    def compute(self) -> int:
        return sum(n for k, n in self.ops.items() if k not in VIEW_OPS)


def build(fused: bool, merge: bool, args: argparse.Namespace) -> torch.nn.Module:
    from nas_cli.spaces.base import RelaxationSpec
    from nas_cli.spaces.nb201 import NB201Space

    space = NB201Space({"init_channels": args.channels, "cells_per_stage": args.cells})
    torch.manual_seed(0)
    net = space.build_supernet(10, 3, RelaxationSpec(), fused=fused)
    if fused:
        for cell in net.cells:
            if hasattr(cell, "merge_1x1"):
                cell.merge_1x1 = merge
    return net.to(args.device).train()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--cells", type=int, default=5)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=g).to(dev)
    y = torch.randint(0, 10, (args.batch,), generator=g).to(dev)
    w = torch.rand(6, 5, generator=g) + 0.05
    w = (w / w.sum(1, keepdim=True)).to(dev).requires_grad_(True)
    variants = {"reference": build(False, True, args), "fused merged": build(True, True, args),
                "fused unmerged": build(True, False, args)}

    def step(net: torch.nn.Module) -> Callable[[], None]:
        def run() -> None:
            net.zero_grad(set_to_none=True)
            w.grad = None
            torch.nn.functional.cross_entropy(net(x, {"cell": w}), y).backward()
        return run

    steps = {name: step(net) for name, net in variants.items()}
    for name, run in steps.items():
        run()
        with OpCounter() as counter:
            run()
        print(f"{name:15s} ATen ops per forward+backward: {sum(counter.ops.values())} "
              f"({counter.compute} without views)")
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.steps):
        for name, run in steps.items():
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            run()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            times[name].append(time.perf_counter() - t0)
    for name, ts in times.items():
        print(f"{name:15s} median {statistics.median(ts) * 1e3:8.2f} ms per forward+backward")


if __name__ == "__main__":
    main()
