"""Depthwise and grouped 1x1 convolution kernels, native vs Triton, one shape at a time.

For the shapes the fused PC-DARTS search supernet and the evaluation network run, this checks the
Triton kernels against ``F.conv2d`` (forward, input gradient, weight gradient; fp32 with TF32 off)
and times each direction of each implementation on the device alone: 10 calls are captured in a
CUDA graph and the replay is timed with CUDA events (median over repeats), as the search step
replays them -- host-side dispatch would otherwise dominate these 10-100 us kernels.

  python benchmarks/conv_kernels.py                 # CUDA
  TRITON_INTERPRET=1 python benchmarks/conv_kernels.py --device cpu --small   # check only
"""

from __future__ import annotations

import argparse
import statistics
from typing import Callable

import torch
import torch.nn.functional as F

from nas_cli.spaces import pointwise as pw
from nas_cli.spaces.depthwise import _grad_input, _grad_weight, depthwise_conv2d, triton_forward

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
    # the evaluation network of the default genotype (GAEA PC-DARTS): sep_conv_3x3 and dil_conv_3x3
    # in the normal cells of each stage, sep_conv_5x5 (stride 2, then 1) in the two reduction cells
    ("eval 32x32 C=36 sep3", 128, 36, 32, 3, 1, 1),
    ("eval 32x32 C=36 dil3", 128, 36, 32, 3, 1, 2),
    ("eval 16x16 C=72 sep3", 128, 72, 16, 3, 1, 1),
    ("eval 8x8 C=144 sep3", 128, 144, 8, 3, 1, 1),
    ("eval reduce 32->16 C=72 sep5", 128, 72, 32, 5, 2, 1),
    ("eval 16x16 C=72 sep5", 128, 72, 16, 5, 1, 1),
    ("eval reduce 16->8 C=144 sep5", 128, 144, 16, 5, 2, 1),
]
#: (label, N, groups, channels per group, H): the fused cell's block-diagonal 1x1 convs
PW_SHAPES = [
    ("pw search 32x32 E=2 c=4", 256, 2, 4, 32),
    ("pw search 32x32 E=5 c=4", 256, 5, 4, 32),
    ("pw search 16x16 E=5 c=8", 256, 5, 8, 16),
    ("pw search 8x8 E=5 c=16", 256, 5, 16, 8),
]
SMALL = [("small", 3, 6, 9, k, s, d) for k in (3, 5) for s in (1, 2) for d in (1, 2)]
PW_SMALL = [("pw small", 3, 2, 4, 5), ("pw small", 2, 3, 16, 4)]


def _time(fn: Callable[[], object], repeats: int) -> float:
    """Median device microseconds per call: 10 calls captured in a CUDA graph, the replay timed."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(10):
            fn()
    graph.replay()
    out = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        stop.record()
        torch.cuda.synchronize()
        out.append(start.elapsed_time(stop) * 100.0)  # ms per 10 calls -> us per call
    return statistics.median(out)


def _check_line(label: str, x: torch.Tensor, w: torch.Tensor, gy: torch.Tensor,
                native: Callable[..., torch.Tensor], triton: Callable[..., torch.Tensor]) -> str:
    """The label and the max relative errors of output, input and weight gradient (Triton vs native)."""
    results = []
    for fn in (triton, native):
        y = fn(x, w)
        results.append((y, *torch.autograd.grad(y, (x, w), gy)))
    errs = [float((a - b).detach().abs().max() / b.detach().abs().max()) for a, b in zip(*results)]
    line = f"{label:32s} {errs[0]:8.1e} {errs[1]:8.1e} {errs[2]:8.1e}"
    return line + ("  MISMATCH" if max(errs) > 1e-4 else "")


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
        gy = torch.randn(F.conv2d(x, w, None, s, p, d, c).shape, device=dev, generator=g)
        line = _check_line(label, x, w, gy, lambda a, b: F.conv2d(a, b, None, s, p, d, c),
                           lambda a, b: depthwise_conv2d(a, b, s, p, d))
        if timing:
            xd, wd = x.detach(), w.detach()
            with torch.no_grad():
                t = [
                    _time(lambda: F.conv2d(xd, wd, None, s, p, d, c), args.repeats),
                    _time(lambda: triton_forward(xd, wd, k, s, p, d), args.repeats),
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
        print(f"depthwise, sum over shapes (fwd + gx + gw): native {totals['native']:.0f} us, "
              f"triton {totals['triton']:.0f} us")
    totals = {"native": 0.0, "triton": 0.0}
    for label, n, groups, c, h in (PW_SMALL if args.small else PW_SHAPES):
        g = torch.Generator(device=dev).manual_seed(0)
        x = torch.randn(n, groups * c, h, h, device=dev, generator=g, requires_grad=True)
        w = torch.randn(groups * c, c, 1, 1, device=dev, generator=g, requires_grad=True)
        gy = torch.randn((n, groups * c, h, h), device=dev, generator=g)
        line = _check_line(label, x, w, gy, lambda a, b: F.conv2d(a, b, None, 1, 0, 1, groups),
                           lambda a, b: pw.grouped_pointwise_triton(a, b, groups))
        if timing:
            from nas_cli.spaces.darts_fused import grouped_pointwise

            xd, wd = x.detach(), w.detach()

            # what autograd runs for the batched-matmul path (darts_fused.grouped_pointwise)
            wg = wd.reshape(groups, c, c)
            gyg = gy.reshape(n, groups, c, h * h)
            xg = xd.reshape(n, groups, c, h * h)
            with torch.no_grad():
                fwd_n = _time(lambda: grouped_pointwise(xd, wd, groups), args.repeats)
                fwd_t = _time(lambda: pw._pointwise(xd, wd, groups), args.repeats)
                gx_n = _time(lambda: torch.matmul(wg.transpose(1, 2), gyg), args.repeats)
                gx_t = _time(lambda: pw._grad_input(gy, wd, groups), args.repeats)
                gw_n = _time(lambda: torch.matmul(gyg, xg.transpose(-1, -2)).sum(0), args.repeats)
                gw_t = _time(lambda: pw.triton_weight_grad(gy, xd, wd, groups), args.repeats)
            t = [fwd_n, fwd_t, gx_n, gx_t, gw_n, gw_t]
            totals["native"] += fwd_n + gx_n + gw_n
            totals["triton"] += fwd_t + gx_t + gw_t
            line += " " + " ".join(f"{v:8.1f}" for v in t)
        print(line, flush=True)
    if timing:
        print(f"grouped 1x1 (native = batched matmul), sum over shapes: native {totals['native']:.0f} us, "
              f"triton {totals['triton']:.0f} us")


if __name__ == "__main__":
    main()
