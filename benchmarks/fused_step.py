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
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build(method: str, fused: bool, args: argparse.Namespace):
    from hydra import compose, initialize_config_dir

    import nas_cli.cli  # noqa: F401
    from nas_cli.stages.search import build_run
    from nas_cli.stages.stepper import build_search_stepper

    ov = [f"method={method}", "dataset=synthetic", f"runtime.device={args.device}",
          f"runtime.fused={str(fused).lower()}", "objective.warmup_epochs=0", f"runtime.precision={args.precision}",
          f"runtime.channels_last={str(args.channels_last).lower()}"]
    if not args.full:
        ov += ["search_space.preset=demo", "dataset.num_train=512", "dataset.image_size=16", "search.batch_size=16"]
    ov += args.set
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=ov)
    with tempfile.TemporaryDirectory() as tmp:
        run = build_run(cfg, Path(tmp))
    run.model.train()
    return run, build_search_stepper(run)


def main() -> None:
    from nas_cli.objectives import Batch

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
        runs = {f: build(method, f, args) for f in (False, True)}
        times: dict[bool, list[float]] = {False: [], True: []}
        for i in range(args.warmup + args.steps):
            for fused, (run, stepper) in runs.items():
                batch = Batch(*run.train_stream.sample())
                sync()
                t0 = time.perf_counter()
                stepper(batch, lambda run=run: Batch(*run.arch_stream.sample()), True)
                sync()
                if i >= args.warmup:
                    times[fused].append(time.perf_counter() - t0)
        ref, fus = statistics.median(times[False]), statistics.median(times[True])
        run = runs[True][0]
        print(f"{method:14s} device={args.device} batch={run.cfg.search.batch_size} "
              f"C={run.cfg.search_space.init_channels} layers={run.cfg.search_space.layers}  "
              f"reference {ref * 1e3:8.1f} ms/step  fused {fus * 1e3:8.1f} ms/step  speed-up {ref / fus:.2f}x")


if __name__ == "__main__":
    main()
