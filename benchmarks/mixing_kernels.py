"""The fused cells' weighted sums: batched matmuls against the Triton kernels of ``spaces/mixing.py``.

    python benchmarks/mixing_kernels.py                 # CUDA: check and time each shape, both ways
    TRITON_INTERPRET=1 python benchmarks/mixing_kernels.py --device cpu   # check only (small sizes)

Each line: the largest output/gradient difference against the batched matmul, then device
microseconds per call (kernel time from torch.profiler; forward, and forward + backward with the
operand and coefficient gradients).
Whole steps: ``nas-bench runtime.mixing=native`` vs ``runtime.mixing=triton``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: (label, N, destinations Q, rows P, C*H*W, with an accumulated term)
SHAPES = [
    ("nb201 32px C=16 source 0", 64, 3, 8, 16 * 32 * 32, False),
    ("nb201 32px C=16 source 1", 64, 2, 6, 16 * 32 * 32, True),
    ("nb201 32px C=16 source 2", 64, 1, 4, 16 * 32 * 32, True),
    ("nb201 8px C=64 source 0", 64, 3, 8, 64 * 8 * 8, False),
    ("pcdarts 32px node 3 ops", 256, 1, 30, 4 * 32 * 32, True),
    ("pcdarts 32px node 0 ops", 256, 1, 12, 4 * 32 * 32, False),
    ("pcdarts 32px skip rows", 256, 1, 5, 4 * 32 * 32, True),
    ("pcdarts 32px bypass", 256, 1, 5, 12 * 32 * 32, True),
    ("pcdarts 8px node 3 ops", 256, 1, 30, 16 * 8 * 8, True),
]


def device_us(fn: Callable[[], object], calls: int = 10) -> float:
    """Device microseconds per call: the kernels' own time (torch.profiler), launch overhead excluded,
    as inside a CUDA-graph-replayed step."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    kernels = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    return sum(e.self_device_time_total for e in kernels) / calls


def run(device: str, small: bool) -> None:
    from nas_cli.spaces.mixing import mix_rows

    g = torch.Generator(device=device).manual_seed(0)
    for label, n, q, p, e, has_acc in SHAPES:
        if small:
            n, e = 2, min(e, 3000)
        m = torch.randn(q, p, device=device, generator=g).requires_grad_()
        o = torch.randn(n, p, e, device=device, generator=g).requires_grad_()
        acc = torch.randn(n, q, e, device=device, generator=g).requires_grad_() if has_acc else None
        gy = torch.randn(n, q, e, device=device, generator=g)
        leaves = [m, o] + ([acc] if acc is not None else [])
        res = {}
        for impl in ("native", "triton"):
            y = mix_rows(m, o, acc, impl)
            res[impl] = (y.detach(), *torch.autograd.grad(y, leaves, gy))
        err = [float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
               for a, b in zip(res["triton"], res["native"])]
        line = f"{label:28s} rel. err (y, dM, dO{', dacc' if has_acc else ''}) " + " ".join(f"{x:.1e}" for x in err)
        assert max(err) < 1e-4, (label, err)
        if device == "cuda":
            times = []
            for impl in ("native", "triton"):
                with torch.no_grad():
                    fwd = device_us(lambda: mix_rows(m, o, acc, impl))
                both = device_us(lambda: torch.autograd.grad(mix_rows(m, o, acc, impl), leaves, gy))
                times.append(f"{impl} {fwd:6.1f}/{both:6.1f} us")
            line += " | " + " | ".join(times)
        print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    run(args.device, small=args.device != "cuda")


if __name__ == "__main__":
    main()
