"""``nas-report``: paper-style tables and plots from run directories (output files only).

    nas-report outputs/pipeline/gaea_pcdarts-darts-cifar10/seed0     # one pipeline
    nas-report multirun/search/2024-...                              # a sweep of searches
    nas-report outputs/ --out report/                                 # everything below a directory

Every ``summary.json`` under the given paths is classified by a *report kind*
(:data:`REPORT_KINDS`, first match wins) from its ``stage``/``kind``/
``search_space`` keys; runs nested inside a directory claimed by another kind
(the jobs of a pipeline or stage) belong to it.  Each kind turns its runs into a
:class:`Report` (a table + figures); the writer prints it with rich and saves
Markdown, CSV and LaTeX next to PNG/SVG plots.  New kinds (NAS-Bench-201 rows,
objective comparisons) register themselves in their own module -- no edits here.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from nas_cli.registry import Registry


@dataclass
class Run:
    """One directory with a ``summary.json``."""

    path: Path
    summary: dict[str, Any]


@dataclass
class Report:
    name: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class ReportKind:
    """``matches(summary)`` claims a run; ``build(runs, fig_dir)`` makes the reports (and figures)."""

    name: str
    matches: Callable[[dict[str, Any]], bool]
    build: Callable[[list[Run], Path], list[Report]]
    #: a run of this kind owns the runs in its subdirectories (pipeline, stage aggregates)
    owns_subdirs: bool = False
    #: kinds are tried in increasing priority (specific kinds before generic fallbacks)
    priority: int = 50


REPORT_KINDS: Registry[ReportKind] = Registry("report kind")


def register_kind(kind: ReportKind) -> None:
    REPORT_KINDS.add(kind.name, kind)


def _load_runs(paths: Sequence[Path]) -> list[Run]:
    runs = []
    seen: set[Path] = set()
    for root in paths:
        files = [root / "summary.json"] if (root / "summary.json").is_file() else []
        files += sorted(p for p in root.rglob("summary.json") if p.parent != root)
        for f in files:
            d = f.parent.resolve()
            if d in seen:
                continue
            seen.add(d)
            try:
                s = json.loads(f.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if isinstance(s, dict) and s.get("status") == "complete":
                runs.append(Run(f.parent, s))
    return runs


def classify(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs grouped by report kind; runs inside a directory owned by another run are dropped."""
    import nas_cli.report.builtin  # noqa: F401  (registers the built-in kinds)

    kinds: list[tuple[Run, ReportKind]] = []
    for r in runs:
        ordered = sorted((REPORT_KINDS.get(n) for n in REPORT_KINDS.names()), key=lambda k: k.priority)
        kind = next((k for k in ordered if k.matches(r.summary)), None)
        if kind is not None:
            kinds.append((r, kind))
    owners = [r.path.resolve() for r, k in kinds if k.owns_subdirs]
    grouped: dict[str, list[Run]] = {}
    for r, k in kinds:
        p = r.path.resolve()
        if any(o != p and o in p.parents for o in owners):
            continue
        grouped.setdefault(k.name, []).append(r)
    return grouped


# ---------------------------------------------------------------------------- writers

def to_markdown(rep: Report) -> str:
    lines = [f"### {rep.title}", "", "| " + " | ".join(rep.columns) + " |",
             "|" + "|".join("---" for _ in rep.columns) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rep.rows]
    if rep.caption:
        lines += ["", rep.caption]
    lines += [f"- {n}" for n in rep.notes]
    lines += ["", *[f"![{f.stem}]({f.name})" for f in rep.figures if f.suffix == ".png"]]
    return "\n".join(lines) + "\n"


def to_csv(rep: Report) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(rep.columns)
    w.writerows(rep.rows)
    return buf.getvalue()


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex(s: str) -> str:
    s = "".join(_TEX.get(c, c) for c in s)
    return s.replace("±", r"$\pm$")


def to_latex(rep: Report) -> str:
    cols = "l" + "c" * (len(rep.columns) - 1)
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_tex(rep.caption or rep.title)}}}",
             rf"\begin{{tabular}}{{{cols}}}", r"\toprule", " & ".join(_tex(c) for c in rep.columns) + r" \\",
             r"\midrule"]
    lines += [" & ".join(_tex(c) for c in r) + r" \\" for r in rep.rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _rich(rep: Report) -> Any:
    from rich.table import Table

    t = Table(title=rep.title, title_justify="left", caption=rep.caption or None)
    for c in rep.columns:
        t.add_column(c)
    for r in rep.rows:
        t.add_row(*r)
    return t


def emit(rep: Report, out_dir: Path | None) -> None:
    """Print one report (rich table + notes) and, with ``out_dir``, save it as Markdown, CSV and LaTeX."""
    from nas_cli.runtime.console import console
    from nas_cli.runtime.io import atomic_write_text

    console.print(_rich(rep))
    for n in rep.notes:
        console.print(f"  [dim]{n}[/]")
    if out_dir is not None:
        for ext, fn in (("md", to_markdown), ("csv", to_csv), ("tex", to_latex)):
            atomic_write_text(out_dir / f"{rep.name}.{ext}", fn(rep))


def build_reports(paths: Sequence[Path], out_dir: Path | None) -> list[Report]:
    runs = _load_runs(paths)
    fig_dir = out_dir or Path(paths[0]) / "report"
    reports: list[Report] = []
    for name, group in classify(runs).items():
        reports += REPORT_KINDS.get(name).build(group, fig_dir)
    return reports


def print_report(path: Path | Sequence[Path], out_dir: Path | None = None, write: bool = True) -> list[Report]:
    """Print (and with ``write`` save) the reports of the runs under ``path``; returns them."""
    from nas_cli.errors import ConfigError
    from nas_cli.runtime.console import console

    paths = [Path(p) for p in ([path] if isinstance(path, (str, Path)) else path)]
    for p in paths:
        if not p.is_dir():
            raise ConfigError(f"{p} is not a directory")
    out = (out_dir or paths[0] / "report") if write else None
    if not write:
        import tempfile

        out = Path(tempfile.mkdtemp(prefix="nas-report-"))
    reports = build_reports(paths, out)
    if not reports:
        raise ConfigError(f"no finished runs (summary.json with status complete) under {', '.join(map(str, paths))}")
    for rep in reports:
        emit(rep, out if write else None)
    if write:
        assert out is not None
        figs = sorted({f for r in reports for f in r.figures})
        console.print(f"report written to {out}: " + ", ".join(f"{r.name}.md/.csv/.tex" for r in reports)
                      + (f"; {len(figs)} figure files" if figs else ""))
    else:
        import shutil

        shutil.rmtree(out, ignore_errors=True)  # type: ignore[arg-type]
    return reports


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    from nas_cli.cliutil import run_command

    ap = argparse.ArgumentParser(prog="nas-report", description="Tables (rich, Markdown, CSV, LaTeX) and plots "
                                 "(PNG, SVG) from nas-search run, multirun or pipeline directories.")
    ap.add_argument("paths", nargs="+", help="run / multirun / pipeline directories (searched recursively)")
    ap.add_argument("--out", default=None, help="output directory (default: <first path>/report)")
    return run_command(ap, _report_command, argv)


def _report_command(args: Any) -> None:
    print_report([Path(p) for p in args.paths], Path(args.out) if args.out else None)


def cli() -> None:
    from nas_cli.cliutil import exit_with

    exit_with(main)
