"""Evaluation-network training-step benchmark (stages 2/3).

Times one training step of the fixed network exactly as the trainer runs it
(device-resident batch with crop/flip/cutout, forward with auxiliary head and
drop-path, loss, backward, grad clip, SGD) and prints step time and images/s.

    python benchmarks/eval_step.py                      # paper size (C=36, L=20, batch 128) on CUDA, small on CPU
    python benchmarks/eval_step.py --arch pcdarts --batch 96 --precision bf16 --json eval.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="gaea_pcdarts")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--full", action="store_true", help="paper sizes even on CPU")
    ap.add_argument("--json", default=None)
    ap.add_argument("--set", nargs="*", default=[], help="extra config overrides")
    args = ap.parse_args()

    from benchmarks.search_step import compose
    from nas_cli.runtime.device import resolve_device
    from nas_cli.spaces.genotypes import get_genotype
    from nas_cli.stages.train_eval import EvalJob, EvalTrainer

    dev = resolve_device(args.device)
    small = dev.type == "cpu" and not args.full
    ov = [f"runtime.device={dev.type}", f"runtime.precision={args.precision}",
          f"runtime.channels_last={str(args.channels_last).lower()}", "train.drop_path=0.3",
          "train.auxiliary_weight=0.4", "train.cutout=16"]
    if small:
        ov += ["train.init_channels=8", "train.layers=8", "dataset.num_train=256", "dataset.image_size=32",
               f"train.batch_size={args.batch or 32}"]
    else:
        ov += ["dataset.num_train=8192", "dataset.num_test=256", f"train.batch_size={args.batch or 128}"]
    cfg = compose(ov + args.set)
    with tempfile.TemporaryDirectory() as tmp:
        tr = EvalTrainer(cfg, EvalJob(args.arch, get_genotype(args.arch), 0, 0.0, False), Path(tmp))
    bs = int(cfg.train.batch_size)
    tr.model.train()
    tr.train_epoch  # noqa: B018  (the trainer sets lr / drop-path per epoch; here: fixed values)
    from nas_cli.stages.common import set_lr

    set_lr(tr.opt, float(cfg.train.lr))
    if tr.graphs:
        tr._drop.fill_(0.15)
        tr.model.drop_path_prob = tr._drop
    else:
        tr.model.drop_path_prob = 0.15
    it = iter(())

    def batch():
        nonlocal it
        try:
            return next(it)
        except StopIteration:
            it = iter(tr.stream.epoch())
            return next(it)

    def step() -> None:
        tr.train_step(*batch())

    sync = (lambda: torch.cuda.synchronize()) if tr.device.type == "cuda" else (lambda: None)
    for _ in range(args.warmup):
        step()
    sync()
    if tr.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    dt = (time.perf_counter() - t0) / args.steps
    res = {"arch": args.arch, "device": torch.cuda.get_device_name() if tr.device.type == "cuda" else "cpu",
           "C": int(cfg.train.init_channels), "L": int(cfg.train.layers), "batch": bs, "precision": args.precision,
           "channels_last": args.channels_last, "cuda_graphs": tr.graphs, "params": tr.params, "step_ms": dt * 1000,
           "images_per_s": bs / dt,
           "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if tr.device.type == "cuda" else None}
    from nas_cli.runtime.console import console, kv_table

    console.print(kv_table("eval-network training step", list(res.items())))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
