"""Objectives side by side on the bilevel testbed: the ``nas-report`` kind and ``nas-compare-objectives``.

Every (architecture optimizer, objective) pair runs on a testbed problem with known
answers (``nas_cli.testbed``; ``experiment=toy/quadratic`` or ``toy/activation``) and is
scored in one row: final upper-level (validation) loss, training loss, weight on the
planted op, whether the planted op won (and which op did), entropy of the op weights,
median time per step, extra memory (weight copies), and on problems with a closed form
the relative error of the objective's hypergradient estimate (after settling the weights
at the initial architecture).  Upper-level loss per step goes to ``upper_loss.png/.svg``.

Two front ends share the rows, table and plot:

* ``nas-search experiment=toy/<problem>`` (``stage=toy``, :mod:`nas_cli.stages.toy`) writes a
  run directory whose ``summary.json`` has ``kind: comparison``; ``nas-report`` reads it
  with the ``comparison`` kind registered here;
* ``nas-compare-objectives`` is the standalone command (flags instead of config groups)::

    nas-compare-objectives                                   # quadratic, all objectives, adam + exp_grad
    nas-compare-objectives --problem activation --out cmp/
    nas-compare-objectives --objectives bilevel f2ba --optimizers exp_grad --set objective.lambda0=10
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

DEFAULT_OBJECTIVES = ["single_level", "bilevel", "bilevel_unrolled", "f2ba", "moreau"]
DEFAULT_OPTIMIZERS = ["adam", "exp_grad"]
COLUMNS = ["optimizer", "objective", "upper_loss", "train_loss", "p_planted", "recovered", "selected", "entropy",
           "step_ms", "extra_memory_bytes", "hypergrad_rel_err"]

Curves = dict[tuple[str, str], list[list[dict[str, Any]]]]  # (optimizer, objective) -> per-step rows per seed


def compare(problem: str, objectives: Sequence[str], optimizers: Sequence[str], steps: int | None = None,
            overrides: Sequence[str] = (), settle_steps: int = 300, progress: bool = False,
            experiment: dict[str, Any] | None = None,
            log_every: int = 1) -> tuple[list[dict[str, Any]], dict[tuple[str, str], list[dict[str, Any]]]]:
    """Run every pair; returns (result rows, {(optimizer, objective): per-step history}).

    ``experiment``: the preset's resolved block, when the caller has composed it already."""
    from nas_cli.testbed import compose_testbed, evaluate

    rows: list[dict[str, Any]] = []
    histories: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for opt in optimizers:
        for obj in objectives:
            cfg = compose_testbed(problem, obj, opt, list(overrides), experiment)
            row, run = evaluate(cfg, steps, settle_steps, log_every)
            rows.append(row)
            histories[(opt, obj)] = run.history
            if progress:
                from nas_cli.runtime.console import console

                console.print(f"  {opt}/{obj}: upper loss {row['upper_loss']:.3g}, argmax {row['selected']}"
                              f"{' (planted)' if row['recovered'] else ''}, {row['step_ms']:.2g} ms/step")
    return rows, histories


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return str(v)


def comparison_report(name: str, title: str, rows: list[dict[str, Any]], curves: Curves, stem: Path,
                      caption: str = "", extra: Sequence[str] = ()) -> Any:
    """The table (one row per result; ``extra`` columns such as ``seed`` first) and the upper-loss figure."""
    from nas_cli.report import Report
    from nas_cli.report.plots import upper_loss_plot

    cols = [*extra, *COLUMNS]
    panels: dict[str, dict[str, list[list[dict[str, Any]]]]] = defaultdict(dict)
    for (opt, obj), runs in curves.items():
        panels[opt][obj] = runs
    figs = upper_loss_plot(panels, stem, title) if panels else []
    return Report(name, title, cols, [[_fmt(r.get(c)) for c in cols] for r in rows], caption=caption,
                  figures=figs)


# ---------------------------------------------------------------------------- nas-report kind

def _series(run_dir: Path, row: dict[str, Any]) -> list[dict[str, Any]]:
    from nas_cli.runtime.io import read_jsonl

    path = run_dir / str(row.get("series", ""))
    return read_jsonl(path) if row.get("series") and path.is_file() else []


def build_comparison(runs: list[Any], fig_dir: Path) -> list[Any]:
    """``nas-report`` kind for ``stage=toy`` runs: one table + upper-loss figure per problem.

    Runs of one problem (seeds, ``-m objective=...`` sweeps) are pooled: rows are listed
    (with a seed column when seeds differ) and the curves of equal pairs averaged."""
    by_problem: dict[str, list[Any]] = defaultdict(list)
    for r in runs:
        by_problem[str(r.summary.get("problem", "?"))].append(r)
    reports = []
    for problem, group in sorted(by_problem.items()):
        seeds = {r.summary.get("seed") for r in group}
        rows, curves = [], defaultdict(list)
        for r in sorted(group, key=lambda r: (r.summary.get("seed", 0), str(r.path))):
            for row in r.summary.get("rows", []):
                rows.append({**row, "seed": r.summary.get("seed")})
                curves[(row["optimizer"], row["objective"])].append(_series(r.path, row))
        s = group[0].summary
        opt = s.get("optimum_upper_loss")
        caption = (f"planted op: {s.get('planted')} of {', '.join(s.get('op_names', []))}"
                   + (f"; upper-level loss at the planted optimum {_fmt(opt)}" if opt is not None else "")
                   + "; hypergrad_rel_err: ||estimate - exact|| / ||exact|| where the closed form is known")
        reports.append(comparison_report(f"objectives_{problem}", f"Objectives on the {problem} testbed",
                                         rows, dict(curves), fig_dir / f"upper_loss_{problem}", caption,
                                         extra=("seed",) if len(seeds) > 1 else ()))
    return reports


def _register_report_kind() -> None:
    from nas_cli.report import REPORT_KINDS, ReportKind, register_kind

    if "comparison" not in REPORT_KINDS:
        register_kind(ReportKind("comparison", lambda s: s.get("kind") == "comparison", build_comparison,
                                 priority=10))


_register_report_kind()


# ---------------------------------------------------------------------------- nas-compare-objectives

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nas-compare-objectives", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--problem", default="quadratic", choices=["quadratic", "activation"])
    p.add_argument("--objectives", nargs="+", default=DEFAULT_OBJECTIVES)
    p.add_argument("--optimizers", nargs="+", default=DEFAULT_OPTIMIZERS)
    p.add_argument("--steps", type=int, default=None, help="search steps (default: the preset's)")
    p.add_argument("--settle-steps", type=int, default=300, help="weight steps before the hypergradient check")
    p.add_argument("--out", default="outputs/compare-objectives", help="output directory")
    p.add_argument("--set", nargs="*", default=[], help="extra config overrides, e.g. objective.lambda0=10")
    return p


def _compare_command(args: argparse.Namespace) -> None:
    import torch

    from nas_cli.report import _rich, to_csv, to_markdown
    from nas_cli.runtime.console import console
    from nas_cli.runtime.io import atomic_write_text

    torch.set_num_threads(1)
    rows, histories = compare(args.problem, args.objectives, args.optimizers, args.steps, args.set,
                              args.settle_steps)
    out = Path(args.out)
    rep = comparison_report("objectives", f"objectives on the {args.problem} testbed", rows,
                            {k: [h] for k, h in histories.items()}, out / "upper_loss")
    console.print(_rich(rep))
    atomic_write_text(out / "objectives.md", to_markdown(rep))
    atomic_write_text(out / "objectives.csv", to_csv(rep))
    for f in [out / "objectives.md", out / "objectives.csv", *rep.figures]:
        console.print(f"wrote {f}")


def main(argv: Sequence[str] | None = None) -> int:
    from nas_cli.cliutil import run_command

    return run_command(_parser(), _compare_command, argv)


if __name__ == "__main__":
    sys.exit(main())
