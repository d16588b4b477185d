"""Pooling kernels: PyTorch's against the Triton ones, per kernel and as whole search steps.

* 3x3 average pooling (stride 1, padding excluded from the count; ``avg_pool_3x3`` in
  spaces/avgpool.py): the product uses Triton kernels for it with ``runtime.depthwise=triton`` since
  2026-12-02 (fifth session, then as an all-ones depthwise conv times the tap counts' reciprocals;
  its own kernels since the ninth session; docs/speed.md).
* max pooling (spaces/maxpool.py: 3x3 stride 1/2 of the ``max_pool_3x3`` edges, 2x2 stride 2 of the
  PC-DARTS bypass): on (``maxpool.ENABLED``) since this measured the search step faster (sixth session).

  python benchmarks/pool_kernels.py                      # CUDA: check, kernel times, search steps both ways
  TRITON_INTERPRET=1 python benchmarks/pool_kernels.py --device cpu   # check only

Kernel lines: device microseconds per call from torch.profiler (forward; forward + backward).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: (label, N, C, H, kind, k, stride, padding)
SHAPES = [
    ("nb201 avg 32x32 C=16", 64, 16, 32, "avg", 3, 1, 1),
    ("nb201 avg 8x8 C=64", 64, 64, 8, "avg", 3, 1, 1),
    ("pcdarts max 3x3 s1 32px, 5 edges", 256, 20, 32, "max", 3, 1, 1),
    ("pcdarts max 3x3 s1 16px, 5 edges", 256, 40, 16, "max", 3, 1, 1),
    ("pcdarts max 3x3 s2 32px, 2 edges", 256, 8, 32, "max", 3, 2, 1),
    ("pcdarts bypass 2x2 s2 32px", 256, 24, 32, "max", 2, 2, 0),
]


def _native(kind: str, k: int, s: int, p: int):
    if kind == "avg":
        return lambda t: F.avg_pool2d(t, k, s, p, count_include_pad=False)
    return lambda t: F.max_pool2d(t, k, s, p)


def _triton(kind: str, k: int, s: int, p: int):
    from nas_cli.spaces import maxpool
    from nas_cli.spaces.avgpool import avg_pool_3x3

    maxpool.ENABLED = True  # per-kernel checks and times (step_times switches it itself)
    return avg_pool_3x3 if kind == "avg" else (lambda t: maxpool.max_pool2d(t, k, s, p))


def check(device: str) -> None:
    g = torch.Generator(device=device).manual_seed(0)
    for label, _, c, h, kind, k, s, p in SHAPES:
        x = torch.randn(2, min(c, 4), h, h, device=device, generator=g, requires_grad=True)
        ref, out = _native(kind, k, s, p)(x), _triton(kind, k, s, p)(x)
        gy = torch.randn(ref.shape, device=device, generator=g)
        (g_ref,), (g_out,) = torch.autograd.grad(ref, x, gy), torch.autograd.grad(out, x, gy)
        err = max(float((out - ref).detach().abs().max()), float((g_out - g_ref).abs().max()))
        print(f"{label:36s} max abs difference (output, input gradient) {err:.2e}")
        assert err < 1e-5, err


def kernel_times() -> None:
    from benchmarks.mixing_kernels import device_us

    for label, n, c, h, kind, k, s, p in SHAPES:
        x = torch.randn(n, c, h, h, device="cuda", requires_grad=True)
        row = []
        for name, fn in (("native", _native(kind, k, s, p)), ("triton", _triton(kind, k, s, p))):
            y = fn(x)
            gy = torch.randn_like(y)
            with torch.no_grad():
                fwd = device_us(lambda: fn(x))
            both = device_us(lambda: torch.autograd.grad(fn(x), x, gy))
            row.append(f"{name} {fwd:6.1f}/{both:6.1f} us")
        print(f"{label:36s} " + " | ".join(row), flush=True)


def step_times() -> None:
    """GAEA PC-DARTS search steps (nas-bench's workload, in this process) with the max-pool kernels off/on."""
    from benchmarks.search_step import compose
    from nas_cli.bench.measure import time_steps
    from nas_cli.bench.prepare import prepare_search
    from nas_cli.bench.workloads import WORKLOADS
    from nas_cli.spaces import maxpool

    w = WORKLOADS.get("gaea_pcdarts_search")
    overrides = [*w.overrides, *w.full, *w.data_full, "runtime.device=cuda"]
    for enabled in (False, True, False):
        prep = prepare_search(compose([*overrides, f"+runtime.kernel_switches.maxpool_kernels={str(enabled).lower()}"]), "")
        timing, peak, _ = time_steps(prep.step, prep.device, 20, 5)
        print(f"gaea_pcdarts_search step, Triton max pools {'on ' if enabled else 'off'}: median {timing.median:.4f} s, "
              f"peak {peak:.2f} GB", flush=True)
    maxpool.ENABLED = False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-steps", action="store_true", help="skip the whole-step timing")
    args = ap.parse_args()
    check(args.device)
    if args.device == "cuda":
        kernel_times()
        if not args.no_steps:
            step_times()


if __name__ == "__main__":
    main()
