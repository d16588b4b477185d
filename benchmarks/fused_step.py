"""Search-step time of the fused DARTS cell vs the per-edge reference (``runtime.fused``).

Builds the same run twice (``runtime.fused=true`` / ``false``) and times full
search steps (architecture + weight step) *alternately*, so load changes on a
shared machine hit both paths equally; prints median seconds per step.

    python benchmarks/fused_step.py                                  # CPU: demo preset, batch 16, 16x16
    python benchmarks/fused_step.py --methods darts --steps 20 --set search.batch_size=64
    python benchmarks/fused_step.py --device cuda --full             # paper sizes
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build(method: str, fused: bool, args: argparse.Namespace):
    """nas-bench's search step (``prepare_search``) for one setting of ``runtime.fused``."""
    from benchmarks.search_step import compose
    from nas_cli.bench.prepare import prepare_search

    ov = [f"method={method}", "dataset=synthetic", f"runtime.device={args.device}",
          f"runtime.fused={str(fused).lower()}", "objective.warmup_epochs=0", f"runtime.precision={args.precision}",
          f"runtime.channels_last={str(args.channels_last).lower()}"]
    if not args.full:
        ov += ["search_space.preset=demo", "dataset.num_train=512", "dataset.image_size=16", "search.batch_size=16"]
    return prepare_search(compose([*ov, *args.set]), "")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["gaea_pcdarts", "darts"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--full", action="store_true", help="the method's paper sizes instead of the demo preset")
    p.add_argument("--set", nargs="*", default=[], help="extra config overrides")
    args = p.parse_args()
    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for method in args.methods:
        preps = {f: build(method, f, args) for f in (False, True)}
        times: dict[bool, list[float]] = {False: [], True: []}
        for i in range(args.warmup + args.steps):
            for fused, prep in preps.items():
                sync()
                t0 = time.perf_counter()
                prep.step()
                sync()
                if i >= args.warmup:
                    times[fused].append(time.perf_counter() - t0)
        ref, fus = statistics.median(times[False]), statistics.median(times[True])
        print(f"{method:14s} device={args.device} {preps[True].sizes}  "
              f"reference {ref * 1e3:8.1f} ms/step  fused {fus * 1e3:8.1f} ms/step  speed-up {ref / fus:.2f}x")

if __name__ == "__main__":
    main()
