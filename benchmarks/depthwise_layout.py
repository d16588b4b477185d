"""Experiment: the fused search cell's depthwise convolutions in NHWC (cuDNN) instead of NCHW (native).

In the H200 profile of the fused, graph-replayed PC-DARTS search step (2026-12-02), depthwise
convolutions take about 28 % of the device time, and their weight gradient alone 11 %. For fp32
NCHW inputs PyTorch runs depthwise convolutions with its own kernels (``conv_depthwise2d_*``).
cuDNN's depthwise kernels are used only for channels-last (or half-precision) inputs. Making the whole
network channels-last was slower (0.219 s vs 0.187 s), because every other op paid for the layout.

This script converts only around the depthwise convs: NCHW -> NHWC -> cuDNN conv -> NCHW. That is
two layout copies per conv in exchange for cuDNN's kernels. Product code is untouched: the
variant is a monkeypatch of the fused conv stage, applied in this process only. Each variant runs
in its own process:

    python benchmarks/depthwise_layout.py --variant native --device cuda
    python benchmarks/depthwise_layout.py --variant nhwc --device cuda
    python benchmarks/depthwise_layout.py --variant nhwc --device cpu --check   # equivalence only

``--check`` first compares the patched and the native conv (outputs, input and weight gradients,
TF32 off) on the device and stops with an error if they differ by more than 1e-4.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def nhwc_depthwise(x: torch.Tensor, weight: torch.Tensor, stride, padding, dilation, groups: int) -> torch.Tensor:
    """The same depthwise conv through cuDNN's channels-last kernels; returns NCHW (contiguous)."""
    y = F.conv2d(x.contiguous(memory_format=torch.channels_last), weight.contiguous(memory_format=torch.channels_last),
                 None, stride, padding, dilation, groups)
    return y.contiguous()


def patch() -> None:
    from nas_cli.spaces import darts_fused

    native = darts_fused._Conv.forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        depthwise = self.weight.shape[1] == 1 and self.groups == self.weight.shape[0] and self.bias is None
        if depthwise and x.is_contiguous():
            return nhwc_depthwise(x, self.weight, self.stride, self.padding, self.dilation, self.groups)
        return native(self, x)

    darts_fused._Conv.forward = forward  # type: ignore[method-assign]


def check(device: str) -> None:
    torch.backends.cudnn.allow_tf32 = False
    g = torch.Generator().manual_seed(0)
    for k, dil, stride in ((3, 1, 1), (5, 1, 1), (3, 2, 1), (5, 2, 2)):
        x = torch.randn(8, 20, 16, 16, generator=g).to(device).requires_grad_(True)
        w = torch.randn(20, 1, k, k, generator=g).to(device).requires_grad_(True)
        pad = (k - 1) * dil // 2
        a = F.conv2d(x, w, None, stride, pad, dil, 20)
        b = nhwc_depthwise(x, w, stride, pad, dil, 20)
        gy = torch.randn_like(a)
        ga = torch.autograd.grad(a, (x, w), gy)
        gb = torch.autograd.grad(b, (x, w), gy)
        for name, u, v in (("output", a, b), ("input grad", ga[0], gb[0]), ("weight grad", ga[1], gb[1])):
            err = float(((u - v).abs().max() / u.abs().max()).detach())
            if err > 1e-4:
                raise SystemExit(f"k={k} dilation={dil} stride={stride}: {name} differs by {err:.2e}")
    print(f"check: the NHWC depthwise conv equals the native one on {device}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", choices=["native", "nhwc"], default="nhwc")
    p.add_argument("--device", default="cuda")
    p.add_argument("--method", default="gaea_pcdarts")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=4)
    p.add_argument("--check", action="store_true", help="compare the two convs first")
    p.add_argument("--set", nargs="*", default=[], help="extra config overrides")
    args = p.parse_args()
    if args.check:
        check(args.device)
    if args.variant == "nhwc":
        patch()
    from benchmarks.search_step import compose
    from nas_cli.bench.prepare import prepare_search

    ov = [f"method={args.method}", f"runtime.device={args.device}", "objective.warmup_epochs=0"]
    if not args.device.startswith("cuda"):
        ov += ["search_space.preset=demo", "dataset.num_train=512", "dataset.image_size=16", "search.batch_size=16"]
    prep = prepare_search(compose([*ov, *args.set]), "")
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    times = []
    for i in range(args.warmup + args.steps):
        sync()
        t0 = time.perf_counter()
        prep.step()
        sync()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    print(f"{args.method} {args.variant:6s} {prep.sizes} stepper={prep.stepper}: "
          f"median {statistics.median(times) * 1e3:.1f} ms/step (min {min(times) * 1e3:.1f})")


if __name__ == "__main__":
    main()
