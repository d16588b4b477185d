"""``nas-bench``: argument parsing and orchestration (which workloads, which variants, where)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from nas_cli.bench.prepare import DEFAULT_GENOTYPE
from nas_cli.bench.workloads import EAGER_OVERRIDES, ORDER, InapplicableOverride, compose_workload, select
from nas_cli.errors import ConfigError, UserError
from nas_cli.runtime.compile import fallback_text

EPILOG = """\
examples:
  nas-bench                                         # all workloads, current device
  nas-bench --workloads gaea_pcdarts_search --steps 50 --json bench.json
  nas-bench runtime.precision=bf16 runtime.channels_last=true
  nas-bench runtime.depthwise=native runtime.pointwise=native   # native conv kernels
  nas-bench runtime.mixing=native                   # weighted sums as batched matmuls
  nas-bench --workloads eval_step runtime.conv1x1=wgrad_matmul   # the evaluation network's 1x1 convs
  nas-bench --workloads eval_step +runtime.compile_options.coordinate_descent_tuning=true  # Inductor options
  nas-bench --compare                               # default vs eager reference, with speed-up
  nas-bench dataset=cifar10 dataset.root=/data/cifar
"""


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="nas-bench", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Time the training steps of the search and evaluation stages on this device "
                    "(data pipeline included): step time (median/mean), images/s, peak memory.")
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                    help="Hydra overrides applied to every workload (after the workload's own); a workload "
                         "whose config lacks a key (search_space.layers for NB201) is skipped unless named "
                         "with --workloads")
    ap.add_argument("--workloads", nargs="+", default=None, metavar="NAME",
                    help=f"subset to run (default: all): {', '.join(ORDER)}")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default: 20 on CUDA, 3 on CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed warm-up steps (default: 5 on CUDA, 1 on CPU); keep >= 3 on CUDA, where the "
                         "CUDA-graph stepper runs 2 eager steps and captures on the 3rd")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--full", action="store_true", help="paper sizes even on CPU")
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the results here (atomically)")
    ap.add_argument("--same-process", action="store_true",
                    help="measure every workload in this process (default: a fresh subprocess each)")
    ap.add_argument("--compare", action="store_true",
                    help="also run each workload with " + " ".join(EAGER_OVERRIDES) + " and show the speed-up")
    ap.add_argument("--genotype", default=DEFAULT_GENOTYPE,
                    help="published genotype name or file for eval_step (default: %(default)s)")
    return ap


def split_workload_args(args: argparse.Namespace) -> None:
    """``--workloads a b key=value``: argparse hands trailing overrides to --workloads; move them
    back to the overrides. Comma-separated names (``--workloads a,b``) are accepted too."""
    if args.workloads is None:
        return
    names = [n for item in args.workloads if "=" not in item for n in item.split(",") if n]
    args.overrides = [item for item in args.workloads if "=" in item] + list(args.overrides)
    args.workloads = names or None


def build_specs(args: argparse.Namespace, device: str) -> list[Any]:
    """One RunSpec per workload and variant; every config is composed here first, so a bad
    override or workload name fails in a second, before anything is measured."""
    from nas_cli.bench.runner import RunSpec
    from nas_cli.runtime.console import console
    from nas_cli.spaces.genotypes import get_genotype

    if args.steps is not None and args.steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {args.steps}")
    if args.warmup is not None and args.warmup < 0:
        raise ConfigError(f"--warmup must be >= 0, got {args.warmup}")
    gpu = device.startswith("cuda")
    steps = args.steps if args.steps is not None else (20 if gpu else 3)
    warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    workloads = select(args.workloads)
    if any(w.kind == "eval" for w in workloads):
        get_genotype(args.genotype)
    variants = [("default", [])] + ([("eager", list(EAGER_OVERRIDES))] if args.compare else [])
    specs = []
    skipped: list[tuple[str, InapplicableOverride]] = []
    for w in workloads:
        try:
            for variant, extra in variants:
                compose_workload(w, device, args.full, args.overrides, extra)
                specs.append(RunSpec(w.name, device, steps, warmup, args.full, list(args.overrides), extra,
                                     variant, args.genotype))
        except InapplicableOverride as exc:
            if args.workloads is not None:  # asked for by name: the override must apply
                raise
            skipped.append((w.name, exc))
    if not specs:
        raise skipped[0][1]  # the override applies to no workload: a plain bad override
    for name, exc in skipped:
        console.print(f"[yellow]skipping {name}: {exc}[/]")
    return specs


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    split_workload_args(args)
    from rich.console import Console

    from nas_cli.runtime.console import console, error_line

    try:
        from nas_cli.bench.runner import run_in_process, run_in_subprocess
        from nas_cli.bench.table import add_speedups, render, write_json
        from nas_cli.runtime.device import resolve_device

        dev = resolve_device(args.device)
        device = str(dev) if dev.type == "cuda" else "cpu"
        specs = build_specs(args, device)
        run = run_in_process if args.same_process else run_in_subprocess
        options = dict(vars(args))
        rows = []
        for spec in specs:
            console.print(f"[dim]measuring {spec.workload} ({spec.variant}, {spec.warmup} warm-up + "
                          f"{spec.steps} timed steps)...[/]")
            rows.append(run(spec))
            if args.json:  # after every workload: a run killed later (a time limit) keeps these rows
                write_json(args.json, rows, options, complete=False)
        add_speedups(rows)
        name = next((r["device"] for r in rows if r.get("device")), device)
        mode = "full sizes" if (args.full or dev.type == "cuda") else "small CPU sizes (--full: paper sizes)"
        table = render(rows, f"nas-bench on {name}: {mode}; targets: the issue's {rows[0]['target_device']} targets")
        # piped output (files, CI logs) would otherwise wrap the table at 80 columns
        (console if console.is_terminal else Console(width=160, highlight=False)).print(table)
        for r in rows:
            if r.get("compile_fallbacks"):
                console.print(f"[yellow]{r['workload']}: {fallback_text(r['compile_fallbacks'])}[/]; that ran "
                              "eagerly, so its time is not the compiled step's (runtime.compile=true stops instead; "
                              "the JSON lists every failure)")
        if args.json:
            path = write_json(args.json, rows, options)
            console.print(f"wrote {path}")
    except UserError as exc:
        error_line(str(exc))
        return exc.exit_code
    failed = [r["workload"] for r in rows if r.get("error")]
    if failed:
        error_line(f"{len(failed)} workload(s) failed: {', '.join(failed)}")
        return 1
    return 0


def cli() -> None:
    sys.exit(main())
