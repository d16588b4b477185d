"""Evaluation-network training-step benchmark (stages 2/3): a thin wrapper over ``nas-bench``.

Kept for its short options; it runs ``nas-bench --workloads eval_step`` (EvalTrainer.train_step
with the trainer's own device-resident data stream, see nas_cli/bench) with them translated.

    python benchmarks/eval_step.py                      # paper size (C=36, L=20, batch 128) on CUDA, small on CPU
    python benchmarks/eval_step.py --arch pcdarts --batch 96 --precision bf16 --json eval.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
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

    from nas_cli.bench import main as bench_main

    argv = ["--workloads", "eval_step", "--genotype", args.arch, "--device", args.device,
            "--steps", str(args.steps), "--warmup", str(args.warmup), "--same-process",
            f"runtime.precision={args.precision}", f"runtime.channels_last={str(args.channels_last).lower()}"]
    argv += ["--full"] if args.full else []
    argv += ["--json", args.json] if args.json else []
    argv += [f"train.batch_size={args.batch}"] if args.batch else []
    argv += args.set
    return bench_main(argv)


if __name__ == "__main__":
    sys.exit(main())
