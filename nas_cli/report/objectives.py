"""``nas-compare-objectives``: objectives side by side on the bilevel testbed.

Runs every (architecture optimizer, objective) pair on a testbed problem with
known answers (``nas_cli.testbed``; ``experiment=toy/quadratic`` or
``toy/activation``) and writes

* ``objectives.csv`` / ``objectives.md`` -- final upper-level (validation) loss, training
  loss, weight on the planted op, whether the planted op won, entropy of the op
  weights, median time per step, extra memory (weight copies), and on the quadratic
  problem the relative error of the objective's hypergradient estimate against the
  closed form (after settling the weights at the initial architecture);
* ``upper_loss.png`` -- upper-level loss per step, one panel per optimizer;

and prints the table.  Self-contained (no dependency on ``nas-report``)::

    nas-compare-objectives                                   # quadratic, all objectives, adam + exp_grad
    nas-compare-objectives --problem activation --out cmp/
    nas-compare-objectives --objectives bilevel f2ba --optimizers exp_grad --set objective.lambda0=10
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

DEFAULT_OBJECTIVES = ["single_level", "bilevel", "bilevel_unrolled", "f2ba", "moreau"]
COLUMNS = ["optimizer", "objective", "upper_loss", "train_loss", "p_planted", "recovered", "entropy",
           "step_ms", "extra_memory_bytes", "hypergrad_rel_err"]


def compare(problem: str, objectives: list[str], optimizers: list[str], steps: int | None = None,
            overrides: list[str] | tuple[str, ...] = (), settle_steps: int = 300) -> tuple[list[dict[str, Any]], dict]:
    """Run every pair; returns (table rows, {(optimizer, objective): [(step, upper_loss), ...]})."""
    from nas_cli.arch import entropy
    from nas_cli.testbed import build_testbed, compose_testbed, hypergradient_estimate, run_testbed

    rows: list[dict[str, Any]] = []
    curves: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for opt in optimizers:
        for obj in objectives:
            cfg = compose_testbed(problem, obj, opt, overrides)
            run = run_testbed(cfg, steps=steps)
            probs = run.probs()
            err = None
            if problem == "quadratic":
                fresh = build_testbed(cfg)
                if fresh.objective.uses_split:
                    h = hypergradient_estimate(fresh, settle_steps)
                    err = float((h["estimate"] - h["exact"]).norm() / h["exact"].norm())
            rows.append({
                "optimizer": opt, "objective": obj, "upper_loss": run.history[-1]["upper_loss"],
                "train_loss": run.history[-1]["train_loss"], "p_planted": float(probs[run.problem.planted]),
                "recovered": int(probs.argmax()) == run.problem.planted,
                "entropy": float(entropy(probs[None])),
                "step_ms": 1e3 * statistics.median(h["step_s"] for h in run.history),
                "extra_memory_bytes": run.objective.extra_memory_bytes(), "hypergrad_rel_err": err,
            })
            curves[(opt, obj)] = [(h["step"], h["upper_loss"]) for h in run.history]
    return rows, curves


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return str(v)


def write_outputs(rows: list[dict[str, Any]], curves: dict, out: Path, title: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nas_cli.runtime.io import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in COLUMNS) + " |" for r in rows]
    atomic_write_text(out / "objectives.md", "\n".join(lines) + "\n")
    tmp = out / "objectives.csv.tmp"
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(out / "objectives.csv")
    optimizers = list(dict.fromkeys(k[0] for k in curves))
    fig, axes = plt.subplots(1, len(optimizers), figsize=(5.5 * len(optimizers), 4), squeeze=False)
    for ax, opt in zip(axes[0], optimizers):
        for (o, obj), pts in curves.items():
            if o == opt:
                ax.plot([p[0] for p in pts], [max(p[1], 1e-12) for p in pts], label=obj)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("upper-level (validation) loss")
        ax.set_title(f"{title} - {opt}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    tmp_png = out / "upper_loss.tmp.png"
    fig.savefig(tmp_png, dpi=110)
    plt.close(fig)
    tmp_png.replace(out / "upper_loss.png")
    return [out / "objectives.md", out / "objectives.csv", out / "upper_loss.png"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="nas-compare-objectives", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--problem", default="quadratic", choices=["quadratic", "activation"])
    p.add_argument("--objectives", nargs="+", default=DEFAULT_OBJECTIVES)
    p.add_argument("--optimizers", nargs="+", default=["adam", "exp_grad"])
    p.add_argument("--steps", type=int, default=None, help="search steps (default: the preset's)")
    p.add_argument("--settle-steps", type=int, default=300, help="weight steps before the hypergradient check")
    p.add_argument("--out", default="outputs/compare-objectives", help="output directory")
    p.add_argument("--set", nargs="*", default=[], help="extra config overrides, e.g. objective.lambda0=10")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    from rich.table import Table

    from nas_cli.errors import UserError
    from nas_cli.runtime.console import console, error_line

    try:
        rows, curves = compare(args.problem, args.objectives, args.optimizers, args.steps, args.set,
                               args.settle_steps)
    except UserError as exc:
        error_line(str(exc))
        return exc.exit_code
    title = f"objectives on the {args.problem} testbed"
    table = Table(title=title)
    for c in COLUMNS:
        table.add_column(c)
    for r in rows:
        table.add_row(*(_fmt(r[c]) for c in COLUMNS))
    console.print(table)
    for f in write_outputs(rows, curves, Path(args.out), title):
        console.print(f"wrote {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
