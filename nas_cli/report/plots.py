"""Report figures (PNG + SVG, matplotlib Agg): op-weight entropy (GAEA Figure 1), learning curves and
the testbed's upper-level loss."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

Series = dict[str, list[list[dict[str, Any]]]]  # label -> one metrics.jsonl row list per seed


def _save(fig: Any, stem: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt in ("png", "svg"):
        p = stem.with_suffix(f".{fmt}")
        tmp = p.with_name(f".{p.name}.tmp.{fmt}")
        fig.savefig(tmp, dpi=150, format=fmt)
        tmp.replace(p)
        out.append(p)
    plt.close(fig)
    return out


def _mean_curve(runs: list[list[dict[str, Any]]], key: str,
                x: str = "epoch") -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Mean and std over seeds of ``key`` per ``x`` (epoch, step), over the x values any seed has."""
    per_x: dict[int, list[float]] = {}
    for rows in runs:
        for r in rows:
            if r.get(key) is not None:
                per_x.setdefault(int(r[x]), []).append(float(r[key]))
    if not per_x:
        return None
    xs = np.array(sorted(per_x))
    vals = [per_x[e] for e in xs]
    return xs, np.array([np.mean(v) for v in vals]), np.array([np.std(v) for v in vals])


def _draw_mean_std(ax: Any, series: Series, key: str, x: str = "epoch") -> int:
    """One line per label (mean over its seeds) with a ± std band; returns how many were drawn.

    The one drawing rule of every report curve, so all figures read the same way."""
    drawn = 0
    for label, runs in series.items():
        c = _mean_curve(runs, key, x)
        if c is None:
            continue
        xs, m, s = c
        ax.plot(xs, m, marker="o" if len(xs) < 15 else None, label=label)
        if len(runs) > 1:
            ax.fill_between(xs, m - s, m + s, alpha=0.2)
        drawn += 1
    return drawn


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def op_count(run_dir: Path) -> int | None:
    """Number of candidate ops of a search run: the last dimension of its op-weight tensors in
    ``arch_history.npz`` (the normal cell's when present; edge-weight vectors are 1-D and skipped).

    None when the file is missing or holds no op tensor (then no uniform reference is drawn)."""
    path = Path(run_dir) / "arch_history.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            ops = {k[len("initial_"):]: z[k].shape for k in z.files if k.startswith("initial_") and z[k].ndim >= 2}
    except (OSError, ValueError):
        return None
    if not ops:
        return None
    return int((ops.get("normal") or next(iter(ops.values())))[-1])


def entropy_plot(series: Series, stem: Path, key: str = "entropy_normal",
                 num_ops: Mapping[str, int | None] | None = None) -> list[Path]:
    """Mean (± std band over seeds) entropy of the normal-cell op weights per epoch, one line per method.

    The dotted reference is the entropy of uniform weights, ln |O|, with |O| taken per series from
    ``num_ops`` (label -> op count, see :func:`op_count`): ln 8 on the DARTS space, ln 5 on
    NAS-Bench-201, one less with ``exclude_zero``.  Series of unknown op count get no reference."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    if not _draw_mean_std(ax, series, key):
        plt.close(fig)
        return []
    counts = sorted({int(n) for label, n in (num_ops or {}).items() if n and label in series})
    for n in counts:
        ax.axhline(np.log(n), color="gray", ls=":", lw=1, label=f"uniform (ln {n})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("entropy of op weights (nats)")
    ax.set_title("Normal-cell operation-weight entropy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, stem)


def curves_plot(series: Series, stem: Path, metrics: Sequence[str] = ("train_acc", "val_acc")) -> list[Path]:
    """Accuracy per epoch (mean over seeds), one panel per metric."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.8), squeeze=False)
    drawn = 0
    for ax, key in zip(axes[0], metrics):
        drawn += _draw_mean_std(ax, series, key)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.set_title(key.replace("_", " "))
    return _finish(fig, axes[0], drawn, stem)


def _finish(fig: Any, axes: Any, drawn: int, stem: Path) -> list[Path]:
    """Legends where something was drawn; save the figure, or drop it when nothing was."""
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if not drawn:
        _pyplot().close(fig)
        return []
    fig.tight_layout()
    return _save(fig, stem)


def upper_loss_plot(panels: Mapping[str, Series], stem: Path, title: str) -> list[Path]:
    """Testbed upper-level (validation) loss per step, log scale: one panel per architecture
    optimizer, one line per objective (mean ± std over seeds)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    drawn = 0
    for ax, (opt, series) in zip(axes[0], panels.items()):
        drawn += _draw_mean_std(ax, series, "upper_loss", x="step")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("upper-level (validation) loss")
        ax.set_title(f"{title} - {opt}")
    return _finish(fig, axes[0], drawn, stem)
