"""Search-step throughput per method and per objective (``--objectives``).

For the standard workloads use ``nas-bench`` (nas_cli/bench); this script keeps the
method x objective comparison and reuses nas-bench's search seam and timer.  It times one full search step (architecture step + weight step, exactly what the
search loop runs) for each requested method, with the GPU-resident data
pipeline included, and prints a rich table; ``--json`` writes the numbers.

    python benchmarks/search_step.py                       # paper sizes on CUDA, small sizes on CPU
    python benchmarks/search_step.py --methods gaea_pcdarts --batch 256 --steps 30
    python benchmarks/search_step.py --dataset cifar10 --set dataset.root=/data
    python benchmarks/search_step.py --space nb201 --methods gaea_darts gdas --batch 64
    python benchmarks/search_step.py --methods pcdarts --batch 256 --objectives bilevel bilevel_unrolled f2ba moreau
        # each objective's step time and peak memory relative to first-order bilevel (first-order
        # bilevel is added as the baseline when missing); extra_mem_mb = the objective's weight copies
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def compose(overrides: list[str]):
    from hydra import compose as hcompose, initialize_config_dir

    import nas_cli.cli  # noqa: F401

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hcompose(config_name="config", overrides=overrides)


def bench_method(method: str, args: argparse.Namespace, device: str, objective: str | None = None) -> dict:
    """Time ``method`` (and optionally another objective) through nas-bench's search seam and timer."""
    from nas_cli.bench.measure import time_steps
    from nas_cli.bench.prepare import prepare_search

    small = device == "cpu" and not args.full
    ov = [f"method={method}", f"dataset={args.dataset}", f"runtime.device={device}",
          f"runtime.precision={args.precision}", f"runtime.channels_last={str(args.channels_last).lower()}",
          "objective.warmup_epochs=0", f"search_space={args.space}"]
    if objective:
        ov.append(f"objective={objective}")
    if args.batch:
        ov.append(f"search.batch_size={args.batch}")
    elif small:
        ov.append("search.batch_size=16")
    if small:
        ov += ["search_space.preset=demo", "dataset.num_train=512", "dataset.image_size=16"]
    elif args.dataset == "synthetic":
        ov += ["dataset.num_train=8192", "dataset.num_test=256"]
    ov += args.set
    cfg = compose(ov)
    prep = prepare_search(cfg, "")
    try:
        timing, peak_gb, _ = time_steps(prep.step, prep.device, args.steps, args.warmup)
    finally:
        prep.keep.cleanup()
    batch, info = int(cfg.search.batch_size), prep.info
    return {
        "method": method, "objective": info["objective"], "stepper": prep.stepper,
        "extra_mem_mb": info["extra_memory_bytes"] / 2**20,
        "device": torch.cuda.get_device_name() if prep.device.type == "cuda" else "cpu",
        "batch": batch, "arch_batch": info["arch_batch"],
        "space": str(cfg.search_space.name), "C": int(cfg.search_space.init_channels),
        "layers": int(cfg.search_space.get("layers") or cfg.search_space.get("cells_per_stage") or 0),
        "precision": args.precision, "channels_last": args.channels_last,
        "step_s_median": timing.median, "step_s_min": min(timing.times),
        "images_per_s": prep.images_per_step / timing.median,  # weight batch + architecture batch
        "peak_mem_gb": peak_gb if prep.device.type == "cuda" else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["gaea_pcdarts", "pcdarts", "darts", "gaea_darts"])
    p.add_argument("--objectives", nargs="+", default=None,
                   help="objectives to time per method (e.g. bilevel bilevel_unrolled f2ba moreau); "
                        "adds time/memory ratios vs first-order bilevel")
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--space", default="darts", help="search space (darts, nb201); sizes: the space's paper preset")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch", type=int, default=None, help="weight (and arch) batch; default: the method's")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--full", action="store_true", help="paper sizes even on CPU")
    p.add_argument("--set", nargs="*", default=[], help="extra config overrides")
    p.add_argument("--json", default=None, help="write results to this file")
    args = p.parse_args()
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else (
        "cpu" if args.device == "auto" else args.device)

    from rich.console import Console
    from rich.table import Table

    objectives = args.objectives or [None]
    if args.objectives and "bilevel" not in objectives:
        objectives = ["bilevel", *objectives]  # the baseline of the relative columns
    rows = [bench_method(m, args, device, o) for m in args.methods for o in objectives]
    for r in rows:  # relative to first-order bilevel of the same method
        base = next((b for b in rows if b["method"] == r["method"] and b["objective"] == "bilevel"), None)
        r["time_vs_bilevel"] = r["step_s_median"] / base["step_s_median"] if base else None
        r["mem_vs_bilevel"] = (r["peak_mem_gb"] / base["peak_mem_gb"]
                               if base and r["peak_mem_gb"] and base["peak_mem_gb"] else None)
    table = Table(title=f"search step ({rows[0]['device']})")
    cols = ["method", "space", "objective", "stepper", "batch", "C", "layers", "precision", "step_s_median", "images_per_s",
            "peak_mem_gb", "extra_mem_mb", "time_vs_bilevel", "mem_vs_bilevel"]
    for col in cols:
        table.add_column(col)
    fmt = {"step_s_median": "{:.4f}", "images_per_s": "{:.0f}", "peak_mem_gb": "{:.2f}", "extra_mem_mb": "{:.1f}",
           "time_vs_bilevel": "{:.2f}x", "mem_vs_bilevel": "{:.2f}x"}
    for r in rows:
        table.add_row(*("-" if r[c] is None else fmt.get(c, "{}").format(r[c]) for c in cols))
    Console().print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
