"""Built-in report kinds: DARTS-space pipelines (GAEA Table 1), stage 2/3 directories, searches."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from nas_cli.report import Report, ReportKind, Run, register_kind
from nas_cli.runtime.io import read_jsonl


def _pm(values: Sequence[float], digits: int = 2) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{statistics.fmean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def _rows_of(path: Path) -> list[dict[str, Any]]:
    f = path / "metrics.jsonl"
    return read_jsonl(f) if f.is_file() else []


def _hours(s: dict[str, Any]) -> tuple[float, str]:
    if s.get("search_gpu_hours"):
        return float(s["search_gpu_hours"]), "GPU"
    return float(s.get("search_cpu_hours") or 0.0), "CPU"


def _cells(genotype: dict[str, Any], label: str, fig_dir: Path) -> list[Path]:
    from nas_cli.report.arch import draw_cell
    from nas_cli.spaces.genotypes import Genotype

    g = Genotype.from_json(genotype)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
    out = []
    for cell in ("normal", "reduce"):
        out += draw_cell(g, cell, fig_dir / f"cell_{safe}_{cell}", title=f"{label}: {cell} cell")
    return out


# ---------------------------------------------------------------------------- pipeline (Table 1)

def _pipeline_label(r: Run, runs: list[Run]) -> str:
    s = r.summary
    label = s.get("method", "?")
    if sum(1 for o in runs if o.summary.get("method") == label) > 1:
        label += f" ({r.path.name if r.path.name not in ('.', '') else r.path})"
    return label


def _op_count(dirs: Sequence[Path]) -> int | None:
    """The op count of a series (its runs share a search space): the first run that records one."""
    from nas_cli.report.plots import op_count

    return next((n for n in map(op_count, dirs) if n), None)


def build_pipeline(runs: list[Run], fig_dir: Path) -> list[Report]:
    from nas_cli.report.plots import curves_plot, entropy_plot

    rows, entropy, num_ops, curves, figs = [], {}, {}, {}, []
    unit = "GPU"
    for r in sorted(runs, key=lambda r: (r.summary.get("method", ""), str(r.path))):
        s = r.summary
        label = _pipeline_label(r, runs)
        searches = [Run(p.parent, json.loads(p.read_text()))
                    for p in sorted((r.path / "search").glob("*/summary.json"))]
        hours = []
        for sr in searches:
            h, unit = _hours(sr.summary)
            hours.append(h)
        rows.append([label, f"{s['test_error_best']:.2f}", f"{s['test_error_mean']:.2f} ± {s['test_error_std']:.2f}",
                     f"{s['params'] / 1e6:.2f}", f"{statistics.fmean(hours) if hours else 0.0:.3f}",
                     f"{len(s.get('search_seeds', []))}/{len(s.get('retrain_seeds', []))}", s.get("selected", "-")])
        entropy[label] = [_rows_of(sr.path) for sr in searches]
        num_ops[label] = _op_count([sr.path for sr in searches])
        curves[f"{label} retrain"] = [_rows_of(p) for p in sorted((r.path / "retrain").glob("seed*"))]
        figs += _cells(s["genotype"], f"{label} selected", fig_dir)
    figs += entropy_plot(entropy, fig_dir / "entropy_normal", num_ops=num_ops)
    figs += curves_plot(curves, fig_dir / "learning_curves", metrics=("train_acc", "test_acc"))
    dataset = runs[0].summary.get("dataset", "")
    return [Report(
        name="table1", title=f"Architecture search on {dataset} (DARTS space)",
        columns=["Method", "Test error best (%)", "Test error avg (%)", "Params (M)",
                 f"Search cost ({unit}-hours/run)", "Seeds (search/retrain)", "Selected"],
        rows=rows, figures=figs,
        caption="Test error of the stage-2 winner retrained from scratch with several seeds (mean ± sample std); "
                "stage 2 selected on a held-out part of the training set.")]


# ---------------------------------------------------------------------------- stage aggregates

def build_stage(runs: list[Run], fig_dir: Path) -> list[Report]:
    from nas_cli.report.plots import curves_plot

    reports = []
    for r in runs:
        s = r.summary
        if s["stage"] == "eval":
            metric = s["metric"]
            rows = [[c["name"], f"{c[metric]:.4f}", f"{c['params'] / 1e6:.2f}", "kept"] for c in s["ranking"]]
            rows += [[c["name"], f"{c[metric]:.4f}", "-", f"eliminated at epoch {s['prune_at_epoch']}"]
                     for c in s.get("eliminated", [])]
            curves = {n: [_rows_of(r.path / n)] for n in s["candidates"]}
            figs = curves_plot(curves, fig_dir / f"eval_curves_{r.path.name}", metrics=("train_acc", "val_acc"))
            reports.append(Report(f"stage2_{r.path.name}", f"Stage 2 ranking ({metric} on held-out "
                                  f"{s['val_portion']:.0%} of train; selected {s['selected']})",
                                  ["Candidate", metric, "Params (M)", "Status"], rows, figures=figs))
        else:
            rows = [[f"seed {seed}", f"{e:.2f}"] for seed, e in zip(s["seeds"], s["test_errors"])]
            rows.append(["mean ± std", f"{s['test_error_mean']:.2f} ± {s['test_error_std']:.2f}"])
            figs = curves_plot({s["arch"]: [_rows_of(p) for p in sorted(r.path.glob("seed*"))]},
                               fig_dir / f"retrain_curves_{r.path.name}", metrics=("train_acc", "test_acc"))
            figs += _cells(s["genotype"], s["arch"], fig_dir)
            reports.append(Report(f"stage3_{r.path.name}", f"Stage 3: {s['arch']} retrained "
                                  f"({s['params'] / 1e6:.2f}M params, {s['epochs']} epochs)",
                                  ["Run", "Test error (%)"], rows, figures=figs))
    return reports


def build_jobs(runs: list[Run], fig_dir: Path) -> list[Report]:
    rows = [[str(r.path), r.summary["stage"], r.summary["name"], str(r.summary["seed"]),
             f"{r.summary['params'] / 1e6:.2f}",
             "-" if r.summary.get("val_acc") is None else f"{r.summary['val_acc']:.4f}",
             "-" if r.summary.get("test_error") is None else f"{r.summary['test_error']:.2f}"] for r in runs]
    return [Report("train_runs", "Evaluation-network training runs",
                   ["Run", "Stage", "Arch", "Seed", "Params (M)", "Val acc", "Test error (%)"], rows)]


# ---------------------------------------------------------------------------- searches

def build_search(runs: list[Run], fig_dir: Path) -> list[Report]:
    from nas_cli.report.plots import curves_plot, entropy_plot

    groups: dict[tuple[str, ...], list[Run]] = defaultdict(list)
    for r in runs:
        s = r.summary
        groups[(s["method"], s["search_space"], s["dataset"], s.get("objective", ""), s.get("tag", ""))].append(r)
    rows, entropy, num_ops, curves, figs = [], {}, {}, {}, []
    unit = "GPU" if any(r.summary.get("search_gpu_hours") for r in runs) else "CPU"
    for key, group in sorted(groups.items()):
        method, space, dataset, objective, tag = key
        label = method + (f" [{objective}]" if len({k[3] for k in groups}) > 1 else "") + (f" ({tag})" if tag and len({k[4] for k in groups}) > 1 else "")
        ss = [r.summary for r in group]
        rows.append([label, space, dataset, str(len(group)),
                     _pm([100 * s["supernet_test_acc"] for s in ss]),
                     _pm([s["final"]["entropy_ops"] for s in ss], 3),
                     f"{ss[0]['supernet_params'] / 1e6:.2f}",
                     f"{statistics.fmean(_hours(s)[0] for s in ss):.3f}"])
        entropy[label] = [_rows_of(r.path) for r in group]
        num_ops[label] = _op_count([r.path for r in group])
        curves[label] = entropy[label]
        figs += _cells(ss[0]["genotype"], f"{label} seed{ss[0]['seed']}", fig_dir)
    figs += entropy_plot(entropy, fig_dir / "entropy_normal", num_ops=num_ops)
    figs += curves_plot(curves, fig_dir / "search_curves", metrics=("train_acc", "val_acc"))
    return [Report("search", "Search runs (supernet; mean ± std over seeds)",
                   ["Method", "Space", "Dataset", "Runs", "Supernet test acc (%)", "Final op entropy",
                    "Supernet params (M)", f"Search cost ({unit}-hours/run)"], rows, figures=figs,
                   caption="Supernet test accuracy is for reference only; it is never used for selection.")]


register_kind(ReportKind("pipeline", lambda s: s.get("stage") == "pipeline", build_pipeline, owns_subdirs=True))
register_kind(ReportKind("stage", lambda s: s.get("kind") == "stage" and s.get("stage") in ("eval", "retrain"),
                         build_stage, owns_subdirs=True))
register_kind(ReportKind("train_job", lambda s: s.get("stage") in ("eval", "retrain") and "kind" not in s,
                         build_jobs))
# generic fallback for searches: more specific kinds (e.g. NAS-Bench-201) use a smaller priority
register_kind(ReportKind("search", lambda s: s.get("stage") == "search" and "supernet_test_acc" in s,
                         build_search, priority=100))
import nas_cli.report.nb201  # noqa: E402,F401  (registers the NAS-Bench-201 kind)
import nas_cli.report.objectives  # noqa: E402,F401  (registers the testbed comparison kind)
