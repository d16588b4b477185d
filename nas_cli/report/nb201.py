"""NAS-Bench-201 reports from run directories (summary.json / metrics.jsonl only).

* :func:`table2_rows` -- [P] Table 2 style: per (method, search dataset, tag) group,
  mean ± std over seeds of the oracle test accuracy of the returned genotype on
  CIFAR-10 / CIFAR-100 / ImageNet16-120, and the mean search seconds.
* :func:`plot_oracle_curves` -- oracle test accuracy of each epoch's genotype,
  mean over seeds with a ±std band, one line per method, one figure (PNG/SVG).

``python -m nas_cli.report.nb201 RUN_DIR... [--plot curves.png]`` prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

from nas_cli.runtime.io import read_jsonl

DATASETS = ("cifar10", "cifar100", "imagenet16_120")


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run dirs (holding summary.json or metrics.jsonl) at or below each path."""
    out: list[Path] = []
    for p in map(Path, paths):
        if (p / "summary.json").is_file() or (p / "metrics.jsonl").is_file():
            out.append(p)
        elif p.is_dir():
            out.extend(sorted({f.parent for f in p.rglob("metrics.jsonl")}))
    return out


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    m = sum(values) / len(values)
    var = sum((v - m) ** 2 for v in values) / len(values)  # population std, as the paper's ± over runs
    return m, math.sqrt(var)


def table2_rows(run_dirs: Iterable[str | Path]) -> list[dict[str, Any]]:
    """One row per (method, dataset searched on, tag): mean/std per benchmark dataset, seeds, seconds."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for d in find_runs(run_dirs):
        f = d / "summary.json"
        if not f.is_file():
            continue
        s = json.loads(f.read_text())
        if s.get("search_space") != "nb201" or s.get("status") != "complete":
            continue
        groups[(s["method"], s["dataset"], s.get("tag", ""))].append(s)
    rows = []
    for (method, dataset, tag), runs in sorted(groups.items()):
        row: dict[str, Any] = {"method": method, "search_dataset": dataset, "tag": tag,
                               "seeds": sorted(int(r["seed"]) for r in runs)}
        for ds in DATASETS:
            accs = [r["oracle"]["test_acc"][ds] for r in runs
                    if isinstance(r.get("oracle"), dict) and r["oracle"].get("test_acc", {}).get(ds) is not None]
            row[f"{ds}_mean"], row[f"{ds}_std"] = _mean_std(accs)
        row["search_seconds"] = _mean_std([float(r["search_seconds"]) for r in runs])[0]
        row["genotypes"] = sorted({r["genotype_str"] for r in runs})
        rows.append(row)
    return rows


def format_rows(rows: Sequence[dict[str, Any]]) -> Any:
    from rich.table import Table

    t = Table(title="NAS-Bench-201 (oracle test accuracy %, mean ± std over seeds)")
    for col in ("method", "searched on", "tag", "seeds", "CIFAR-10", "CIFAR-100", "ImageNet16-120", "search (s)"):
        t.add_column(col)
    for r in rows:
        cells = []
        for ds in DATASETS:
            m, s = r[f"{ds}_mean"], r[f"{ds}_std"]
            cells.append("-" if m is None else f"{m:.2f} ± {s:.2f}")
        t.add_row(r["method"], r["search_dataset"], r["tag"], str(len(r["seeds"])), *cells,
                  f"{r['search_seconds']:.0f}")
    return t


def oracle_curves(run_dirs: Iterable[str | Path]) -> dict[str, dict[int, list[float]]]:
    """method -> epoch -> oracle_test_acc of each seed."""
    curves: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for d in find_runs(run_dirs):
        f = d / "metrics.jsonl"
        if not f.is_file():
            continue
        label = None
        if (d / "summary.json").is_file():
            s = json.loads((d / "summary.json").read_text())
            label = s["method"] + (f" ({s['tag']})" if s.get("tag") else "")
        rows = read_jsonl(f)
        if label is None:
            label = d.parent.name
        for r in rows:
            if r.get("oracle_test_acc") is not None:
                curves[label][int(r["epoch"])].append(float(r["oracle_test_acc"]))
    return {k: dict(v) for k, v in curves.items() if v}


def plot_oracle_curves(run_dirs: Iterable[str | Path], out: str | Path, title: str = "") -> Path:
    """Oracle accuracy per epoch, one line (mean) and band (±std) per method; .png or .svg by suffix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = oracle_curves(run_dirs)
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, per_epoch in sorted(curves.items()):
        epochs = sorted(per_epoch)
        stats = [_mean_std(per_epoch[e]) for e in epochs]
        mean = [m for m, _ in stats]
        std = [s for _, s in stats]
        ax.plot(epochs, mean, label=label)
        ax.fill_between(epochs, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("oracle test accuracy (%)")
    ax.set_title(title or "NAS-Bench-201: benchmark accuracy of the current architecture")
    if curves:
        ax.legend()
    ax.grid(alpha=0.3)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{out.suffix}")
    fig.savefig(tmp, bbox_inches="tight", dpi=120)
    plt.close(fig)
    tmp.replace(out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from nas_cli.runtime.console import console, error_line

    p = argparse.ArgumentParser(prog="python -m nas_cli.report.nb201", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", help="run directories or folders containing them")
    p.add_argument("--plot", default=None, help="write the oracle-accuracy curves here (.png/.svg)")
    p.add_argument("--json", default=None, help="write the table rows as JSON")
    args = p.parse_args(argv)
    rows = table2_rows(args.dirs)
    if not rows:
        error_line(f"no finished nb201 runs (summary.json) under {', '.join(args.dirs)}")
        return 2
    console.print(format_rows(rows))
    if args.json:
        from nas_cli.runtime.io import atomic_write_json

        atomic_write_json(args.json, rows)
    if args.plot:
        console.print(f"wrote {plot_oracle_curves(args.dirs, args.plot)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


# ---------------------------------------------------------------------------- nas-report kind

def _build_report(runs: list[Any], fig_dir: Path) -> list[Any]:
    """``nas-report`` kind for NB201 searches: Table-2 rows + oracle curves (PNG and SVG)."""
    from nas_cli.report import Report

    dirs = [r.path for r in runs]
    rows = table2_rows(dirs)
    figs: list[Path] = []
    if oracle_curves(dirs):
        figs = [plot_oracle_curves(dirs, fig_dir / f"nb201_oracle_curves.{ext}") for ext in ("png", "svg")]
    table = []
    for r in rows:
        cells = ["-" if r[f"{ds}_mean"] is None else f"{r[f'{ds}_mean']:.2f} ± {r[f'{ds}_std']:.2f}"
                 for ds in DATASETS]
        table.append([r["method"], r["search_dataset"], r["tag"], str(len(r["seeds"])), *cells,
                      f"{r['search_seconds']:.0f}", "; ".join(r["genotypes"])])
    notes = [] if figs else ["no oracle_test_acc in these runs: configure oracle=nb201 oracle.path=... to get "
                             "benchmark accuracies and curves"]
    return [Report("nb201_table2", "NAS-Bench-201 (oracle test accuracy %, mean ± std over seeds)",
                   ["Method", "Searched on", "Tag", "Seeds", "CIFAR-10", "CIFAR-100", "ImageNet16-120",
                    "Search (s)", "Genotypes"], table, figures=figs, notes=notes)]


def _register_report_kind() -> None:
    from nas_cli.report import REPORT_KINDS, ReportKind, register_kind

    if "nb201" not in REPORT_KINDS:
        register_kind(ReportKind("nb201", lambda s: s.get("stage") == "search" and s.get("search_space") == "nb201",
                                 _build_report, priority=10))


_register_report_kind()
