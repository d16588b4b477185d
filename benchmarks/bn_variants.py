"""Micro-benchmark: training-mode, non-affine BatchNorm2d forward+backward on the supernet's shapes.

The search supernets' BNs have few channels (4-64) and large N*H*W; PyTorch's native kernel
parallelises over channels, so it is slow there.  This compares implementations of the same function.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from nas_cli.spaces.batchnorm import BN_IMPLS

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shapes = [(256, 4, 32, 32), (256, 20, 32, 32), (256, 16, 32, 32), (256, 8, 16, 16), (256, 40, 16, 16),
              (256, 16, 8, 8), (64, 16, 32, 32), (128, 36, 32, 32)]
    reps = 50 if dev.type == "cuda" else 3
    print(f"{'shape':>22} " + " ".join(f"{k:>15}" for k in BN_IMPLS) + "   (us per fwd+bwd: eager/graphed)")
    for shape in shapes:
        row = []
        for name, fn in BN_IMPLS.items():
            x = torch.randn(shape, device=dev, requires_grad=True)
            g = torch.randn(shape, device=dev)
            rm = torch.zeros(shape[1], device=dev)
            rv = torch.ones(shape[1], device=dev)
            for _ in range(3):
                fn(x, rm, rv, 0.1, 1e-5).backward(g)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(reps):
                fn(x, rm, rv, 0.1, 1e-5).backward(g)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            eager = (time.perf_counter() - t0) / reps * 1e6
            graphed = float("nan")
            if dev.type == "cuda":  # inside a CUDA graph: launch overhead gone, kernel time only
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    fn(x, rm, rv, 0.1, 1e-5).backward(g)
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    fn(x, rm, rv, 0.1, 1e-5).backward(g)
                graph.replay()
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in range(reps):
                    graph.replay()
                torch.cuda.synchronize()
                graphed = (time.perf_counter() - t0) / reps * 1e6
            row.append(f"{eager:7.1f}/{graphed:6.1f}")
        print(f"{str(shape):>22} " + " ".join(f"{v:>15}" for v in row))


if __name__ == "__main__":
    main()
