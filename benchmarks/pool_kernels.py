"""Experiment (not productised): 3x3 average pooling as the Triton depthwise conv.

In the NB201 GAEA DARTS step's profile (H200, 2026-12-02, fourth session) ``avg_pool2d``'s forward and
backward kernels took 4.9 of 30.4 ms of device time.  ``avg_pool_3x3`` (count_include_pad=False) is
a depthwise conv with an all-ones 3x3 kernel times the reciprocal of the number of valid taps, so
the Triton depthwise kernels (spaces/depthwise.py) can compute it; the constant kernel needs no
weight gradient, which those kernels then skip.

  python benchmarks/pool_kernels.py                      # CUDA: check, kernel times, NB201 step both ways
  TRITON_INTERPRET=1 python benchmarks/pool_kernels.py --device cpu   # check only

The step comparison patches the fused NB201 cells' pooling stage (``_Pool``) for the second
measurement; the product keeps ``avg_pool2d`` until this measures faster.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: (label, N, C, H): the fused NB201 cell pools each source node once (C=16/32/64 at 32/16/8 px)
SHAPES = [("nb201 32x32 C=16", 64, 16, 32), ("nb201 16x16 C=32", 64, 32, 16), ("nb201 8x8 C=64", 64, 64, 8)]


def avg_pool_3x3(x: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """``F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)`` via the Triton depthwise conv."""
    from nas_cli.spaces.depthwise import depthwise_conv2d

    c, h, w = x.shape[1:]
    ones = torch.ones(c, 1, 3, 3, device=x.device, dtype=x.dtype)
    plane = torch.ones(1, 1, h, w, device=x.device, dtype=x.dtype)
    count = F.conv2d(plane, torch.ones(1, 1, 3, 3, device=x.device, dtype=x.dtype), None, stride, 1)
    return depthwise_conv2d(x, ones, stride, 1, 1) * count.reciprocal()


def check(device: str) -> None:
    g = torch.Generator(device=device).manual_seed(0)
    for stride in (1, 2):
        x = torch.randn(3, 5, 9, 8, device=device, generator=g, requires_grad=True)
        ref = F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)
        out = avg_pool_3x3(x, stride)
        gy = torch.randn(ref.shape, device=device, generator=g)
        (g_ref,), (g_out,) = torch.autograd.grad(ref, x, gy), torch.autograd.grad(out, x, gy)
        err = max(float((out - ref).detach().abs().max()), float((g_out - g_ref).abs().max()))
        print(f"stride {stride}: max abs difference (output, input gradient) {err:.2e}")
        assert err < 1e-5, err


def kernel_times() -> None:
    from benchmarks.conv_kernels import _time

    for label, n, c, h in SHAPES:
        x = torch.randn(n, c, h, h, device="cuda", requires_grad=True)
        gy = torch.randn(n, c, h, h, device="cuda")
        row = []
        for name, fn in (("avg_pool2d", lambda t: F.avg_pool2d(t, 3, 1, 1, count_include_pad=False)),
                         ("triton dw", avg_pool_3x3)):
            fwd = _time(lambda: fn(x), 20)
            both = _time(lambda: torch.autograd.grad(fn(x), x, gy), 20)
            row.append(f"{name} fwd {fwd:7.1f} us, fwd+bwd {both:7.1f} us")
        print(f"{label:20s} " + " | ".join(row))


def step_times() -> None:
    from benchmarks.search_step import compose
    from nas_cli.bench.measure import time_steps
    from nas_cli.bench.prepare import prepare_search
    from nas_cli.bench.workloads import WORKLOADS
    from nas_cli.spaces import nb201_fused

    w = WORKLOADS.get("nb201_gaea_darts")
    overrides = [*w.overrides, *w.full, *w.data_full, "runtime.device=cuda"]
    original = nb201_fused._Pool.forward
    for name in ("avg_pool2d", "triton dw"):
        if name == "triton dw":
            nb201_fused._Pool.forward = lambda self, x: (  # type: ignore[method-assign]
                avg_pool_3x3(x) if isinstance(self.pool, torch.nn.AvgPool2d) else original(self, x))
        try:
            prep = prepare_search(compose(overrides), "")
            timing, peak, _ = time_steps(prep.step, prep.device, 20, 5)
            print(f"nb201_gaea_darts step, pooling by {name}: median {timing.median:.4f} s, peak {peak:.2f} GB")
        finally:
            nb201_fused._Pool.forward = original  # type: ignore[method-assign]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    check(args.device)
    if args.device == "cuda":
        kernel_times()
        step_times()


if __name__ == "__main__":
    main()
