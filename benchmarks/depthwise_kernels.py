"""Depthwise convolution kernels, native vs Triton (``runtime.depthwise``), one shape at a time.

For the shapes the fused PC-DARTS search supernet and the evaluation network run, this checks the
Triton kernels against ``F.conv2d`` (forward, input gradient, weight gradient; fp32 with TF32 off)
and times each direction of each implementation with CUDA events (median over repeats, the
launches queued back to back, so launch overhead is hidden as it is in a replayed CUDA graph).

  python benchmarks/depthwise_kernels.py                 # CUDA
  TRITON_INTERPRET=1 python benchmarks/depthwise_kernels.py --device cpu --small   # check only
"""

from __future__ import annotations

import argparse
import statistics
from typing import Callable

import torch
import torch.nn.functional as F

from nas_cli.spaces.depthwise import _conv, _grad_input, _grad_weight, depthwise_conv2d

#: (label, N, C, H, k, stride, dilation): the search supernet's node groups (PC-DARTS C=16, K=4:
#: 4/8/16 sampled channels per edge, 2..5 edges per node) and the C=36 evaluation network
SHAPES = [
    ("search 32x32 E=2 sep3", 256, 8, 32, 3, 1, 1),
    ("search 32x32 E=5 sep3", 256, 20, 32, 3, 1, 1),
    ("search 32x32 E=5 sep5", 256, 20, 32, 5, 1, 1),
    ("search 32x32 E=5 dil3", 256, 20, 32, 3, 1, 2),
    ("search 32x32 E=5 dil5", 256, 20, 32, 5, 1, 2),
    ("search reduce 32->16 E=2 sep5", 256, 16, 32, 5, 2, 1),
    ("search 16x16 E=5 sep3", 256, 40, 16, 3, 1, 1),
    ("search 8x8 E=5 sep5", 256, 80, 8, 5, 1, 1),
    ("eval 32x32 C=36 sep3", 128, 36, 32, 3, 1, 1),
    ("eval 16x16 C=72 sep5", 128, 72, 16, 5, 1, 1),
    ("eval 8x8 C=144 sep3", 128, 144, 8, 3, 1, 1),
]
SMALL = [("small", 3, 6, 9, k, s, d) for k in (3, 5) for s in (1, 2) for d in (1, 2)]


def _time(fn: Callable[[], object], repeats: int) -> float:
    """Median microseconds per call, calls queued back to back in groups of 10."""
    for _ in range(3):
        fn()
    out = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(10):
            fn()
        stop.record()
        torch.cuda.synchronize()
        out.append(start.elapsed_time(stop) * 100.0)  # ms per 10 calls -> us per call
    return statistics.median(out)


def _native_grads(x: torch.Tensor, w: torch.Tensor, gy: torch.Tensor, s: int, p: int, d: int):
    y = F.conv2d(x, w, None, s, p, d, x.shape[1])
    return torch.autograd.grad(y, (x, w), gy)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true", help="tiny shapes (for the CPU interpreter)")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    dev = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    timing = dev.type == "cuda"
    print(f"{'shape':32s} {'max rel err y/gx/gw':>26s}" + (
        f" {'fwd nat':>8s} {'fwd tri':>8s} {'gx nat':>8s} {'gx tri':>8s} {'gw nat':>8s} {'gw tri':>8s}  (us)"
        if timing else ""))
    totals = {"native": 0.0, "triton": 0.0}
    for label, n, c, h, k, s, d in (SMALL if args.small else SHAPES):
        p = d * (k - 1) // 2
        g = torch.Generator(device=dev).manual_seed(0)
        x = torch.randn(n, c, h, h, device=dev, generator=g, requires_grad=True)
        w = torch.randn(c, 1, k, k, device=dev, generator=g, requires_grad=True)
        y_ref = F.conv2d(x, w, None, s, p, d, c)
        gy = torch.randn(y_ref.shape, device=dev, generator=g)
        gx_ref, gw_ref = _native_grads(x, w, gy, s, p, d)
        y = depthwise_conv2d(x, w, s, p, d)
        gx, gw = torch.autograd.grad(y, (x, w), gy)
        errs = [float((a - b).detach().abs().max() / b.abs().max()) for a, b in ((y, y_ref), (gx, gx_ref), (gw, gw_ref))]
        line = f"{label:32s} {errs[0]:8.1e} {errs[1]:8.1e} {errs[2]:8.1e}"
        if max(errs) > 1e-4:
            line += "  MISMATCH"
        if timing:
            xd, wd = x.detach(), w.detach()
            with torch.no_grad():
                t = [
                    _time(lambda: F.conv2d(xd, wd, None, s, p, d, c), args.repeats),
                    _time(lambda: _conv(xd, wd, k, s, p, d), args.repeats),
                    _time(lambda: torch.ops.aten.convolution_backward(
                        gy, xd, wd, None, [s, s], [p, p], [d, d], False, [0, 0], c, [True, False, False]),
                        args.repeats),
                    _time(lambda: _grad_input(gy, xd, wd, k, s, p, d), args.repeats),
                    _time(lambda: torch.ops.aten.convolution_backward(
                        gy, xd, wd, None, [s, s], [p, p], [d, d], False, [0, 0], c, [False, True, False]),
                        args.repeats),
                    _time(lambda: _grad_weight(gy, xd, wd, k, s, p, d), args.repeats),
                ]
            totals["native"] += t[0] + t[2] + t[4]
            totals["triton"] += t[1] + t[3] + t[5]
            line += " " + " ".join(f"{v:8.1f}" for v in t)
        print(line, flush=True)
    if timing:
        print(f"sum over shapes (fwd + gx + gw): native {totals['native']:.0f} us, triton {totals['triton']:.0f} us")


if __name__ == "__main__":
    main()
