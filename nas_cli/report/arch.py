"""``nas-arch``: look at a DARTS-space genotype -- cells, parameter count, multiply-adds, diagrams.

    nas-arch darts_v2                       # published genotype (case-insensitive, aliases)
    nas-arch outputs/search/.../genotype.json --dataset imagenet --out figs/

Cell diagrams are drawn with matplotlib directly (no graphviz): inputs
c_{k-2}, c_{k-1} on the left, intermediate nodes 0..3, the output c_{k}
(concatenation of the ``*_concat`` nodes) on the right, one labelled arrow per
chosen edge.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from nas_cli.spaces.genotypes import Genotype

OP_COLORS = {
    "skip_connect": "#7f7f7f", "max_pool_3x3": "#1f77b4", "avg_pool_3x3": "#17becf",
    "sep_conv_3x3": "#d62728", "sep_conv_5x5": "#ff7f0e", "dil_conv_3x3": "#2ca02c",
    "dil_conv_5x5": "#9467bd", "none": "#cccccc",
}


def draw_cell(genotype: Genotype, cell: str, path_stem: Path, formats: Sequence[str] = ("png", "svg"),
              title: str | None = None) -> list[Path]:
    """Draw the ``cell`` ("normal"/"reduce") DAG; writes ``<stem>.<fmt>`` for each format."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    pairs = genotype.normal if cell == "normal" else genotype.reduce
    concat = genotype.normal_concat if cell == "normal" else genotype.reduce_concat
    steps = len(pairs) // 2
    pos: dict[int, tuple[float, float]] = {0: (0.0, 1.6), 1: (0.0, -1.6)}
    for i in range(steps):
        pos[i + 2] = (2.0 + 2.2 * i, 1.0 if i % 2 == 0 else -1.0)
    out_xy = (2.0 + 2.2 * steps + 0.6, 0.0)
    labels = {0: "c_{k-2}", 1: "c_{k-1}", **{i + 2: str(i) for i in range(steps)}}

    fig, ax = plt.subplots(figsize=(2.4 + 2.0 * steps, 4.2))
    ax.set_axis_off()
    ax.set_xlim(-1.0, out_xy[0] + 1.0)
    ax.set_ylim(-2.6, 2.6)

    def node(xy: tuple[float, float], text: str, color: str) -> None:
        ax.add_patch(FancyBboxPatch((xy[0] - 0.45, xy[1] - 0.28), 0.9, 0.56, boxstyle="round,pad=0.05",
                                    fc=color, ec="black", lw=1.0, zorder=3))
        ax.text(xy[0], xy[1], f"${text}$" if "_" in text else text, ha="center", va="center",
                fontsize=11, zorder=4)

    for i, (op, j) in enumerate(pairs):
        dst = i // 2 + 2
        (x0, y0), (x1, y1) = pos[j], pos[dst]
        rad = 0.25 if i % 2 == 0 else -0.25
        color = OP_COLORS.get(op, "black")
        ax.annotate("", xy=(x1 - 0.45, y1), xytext=(x0 + 0.45, y0), zorder=2,
                    arrowprops=dict(arrowstyle="-|>", color=color, lw=1.6, shrinkA=2, shrinkB=2,
                                    connectionstyle=f"arc3,rad={rad}"))
        # label at the Bezier midpoint of matplotlib's arc3 curve: chord midpoint + rad/2 * (dy, -dx)
        sx, sy, ex, ey = x0 + 0.45, y0, x1 - 0.45, y1
        mx, my = (sx + ex) / 2 + 0.5 * rad * (ey - sy), (sy + ey) / 2 - 0.5 * rad * (ex - sx)
        ax.text(mx, my, op, fontsize=8, ha="center", va="center", color=color, zorder=5,
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))
    for k in concat:
        x0, y0 = pos[k]
        ax.annotate("", xy=(out_xy[0] - 0.45, out_xy[1]), xytext=(x0 + 0.45, y0), zorder=1,
                    arrowprops=dict(arrowstyle="-|>", color="#bbbbbb", lw=1.0, ls="--"))
    for k, xy in pos.items():
        node(xy, labels[k], "#a6cee3" if k < 2 else "#ffffb3")
    node(out_xy, "c_{k}", "#b2df8a")
    ax.set_title(title or f"{cell} cell", fontsize=12)
    fig.tight_layout()
    written = []
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    for fmt in formats:
        p = path_stem.with_suffix(f".{fmt}")
        tmp = p.with_name(f".{p.name}.tmp.{fmt}")
        fig.savefig(tmp, dpi=150, format=fmt)
        tmp.replace(p)  # atomic: a reader never sees half a figure
        written.append(p)
    plt.close(fig)
    return written


def describe(genotype: Genotype, dataset: str = "cifar10", num_classes: int | None = None) -> dict[str, int]:
    """Eval-network parameter count (auxiliary head excluded) and multiply-adds at the paper's size."""
    from nas_cli.spaces.base import count_parameters
    from nas_cli.spaces.darts_eval import NetworkCIFAR, NetworkImageNet, count_multiply_adds

    if dataset == "imagenet":
        net = NetworkImageNet(48, num_classes or 1000, 14, auxiliary=True, genotype=genotype)
        size = (3, 224, 224)
    else:
        net = NetworkCIFAR(36, num_classes or (100 if dataset == "cifar100" else 10), 20, auxiliary=True,
                           genotype=genotype)
        size = (3, 32, 32)
    return {"params": count_parameters(net), "multiply_adds": count_multiply_adds(net, size)}


def genotype_text(g: Genotype) -> str:
    return (f"Genotype(normal={list(g.normal)}, normal_concat={list(g.normal_concat)}, "
            f"reduce={list(g.reduce)}, reduce_concat={list(g.reduce_concat)})")


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if any(a.startswith("|") and "~" in a for a in args_list):  # a NAS-Bench-201 arch string
        from nas_cli.spaces.nb201 import main as nb201_main

        return nb201_main(args_list)
    from nas_cli.cliutil import run_command
    from nas_cli.spaces.genotypes import list_genotypes

    ap = argparse.ArgumentParser(prog="nas-arch", description="Show a DARTS-space genotype: cells, params, "
                                 "multiply-adds, and normal/reduction cell diagrams (PNG + SVG).")
    ap.add_argument("arch", help=f"published name ({', '.join(list_genotypes())}) or a genotype file")
    ap.add_argument("--dataset", choices=("cifar10", "cifar100", "imagenet"), default="cifar10",
                    help="evaluation-network setting: CIFAR C=36 L=20 (32x32) or ImageNet C=48 L=14 (224x224)")
    ap.add_argument("--out", default=None, help="directory for the diagrams (default: ./arch-<name>)")
    ap.add_argument("--no-plots", action="store_true", help="only print")
    return run_command(ap, _show, args_list)


def _show(args: argparse.Namespace) -> None:
    """Print a genotype's description (and draw its cells)."""
    from nas_cli.runtime.console import console, kv_table
    from nas_cli.spaces.genotypes import get_genotype

    text = args.arch[len("arch="):] if args.arch.startswith("arch=") else args.arch
    geno = get_genotype(text)
    info = describe(geno, args.dataset)
    name = Path(text).stem if Path(text).suffix else text
    rows = [("genotype", genotype_text(geno)),
            ("normal", "  ".join(f"{op}<-{j}" for op, j in geno.normal)),
            ("reduce", "  ".join(f"{op}<-{j}" for op, j in geno.reduce)),
            (f"params ({args.dataset}, no aux)", f"{info['params']:,} ({info['params'] / 1e6:.2f}M)"),
            ("multiply-adds", f"{info['multiply_adds']:,} ({info['multiply_adds'] / 1e6:.0f}M)")]
    if not args.no_plots:
        out = Path(args.out or f"arch-{name}")
        files = []
        for cell in ("normal", "reduce"):
            files += draw_cell(geno, cell, out / f"{name}_{cell}", title=f"{name}: {cell} cell")
        rows.append(("diagrams", ", ".join(str(f) for f in files)))
    console.print(kv_table(f"architecture {name}", rows))


def cli() -> None:
    from nas_cli.cliutil import exit_with

    exit_with(main)


if __name__ == "__main__":
    cli()
