"""Report figures (PNG + SVG, matplotlib Agg): op-weight entropy (GAEA Figure 1) and learning curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

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


def _mean_curve(runs: list[list[dict[str, Any]]], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Per-epoch mean and std over seeds, over the epochs all seeds have a value for."""
    per_epoch: dict[int, list[float]] = {}
    for rows in runs:
        for r in rows:
            if r.get(key) is not None:
                per_epoch.setdefault(int(r["epoch"]), []).append(float(r[key]))
    if not per_epoch:
        return None
    ep = np.array(sorted(per_epoch))
    vals = [per_epoch[e] for e in ep]
    return ep, np.array([np.mean(v) for v in vals]), np.array([np.std(v) for v in vals])


def entropy_plot(series: Series, stem: Path, key: str = "entropy_normal") -> list[Path]:
    """Mean (± std band over seeds) entropy of the normal-cell op weights per epoch, one line per method."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = 0
    for label, runs in series.items():
        c = _mean_curve(runs, key)
        if c is None:
            continue
        ep, m, s = c
        ax.plot(ep, m, marker="o" if len(ep) < 15 else None, label=label)
        ax.fill_between(ep, m - s, m + s, alpha=0.2)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return []
    ax.axhline(np.log(8), color="gray", ls=":", lw=1, label="uniform (log 8)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("entropy of op weights (nats)")
    ax.set_title("Normal-cell operation-weight entropy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, stem)


def curves_plot(series: Series, stem: Path, metrics: Sequence[str] = ("train_acc", "val_acc")) -> list[Path]:
    """Accuracy per epoch (mean over seeds), one panel per metric."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.8), squeeze=False)
    drawn = 0
    for ax, key in zip(axes[0], metrics):
        for label, runs in series.items():
            c = _mean_curve(runs, key)
            if c is None:
                continue
            ep, m, s = c
            ax.plot(ep, m, marker="o" if len(ep) < 15 else None, label=label)
            ax.fill_between(ep, m - s, m + s, alpha=0.2)
            drawn += 1
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.set_title(key.replace("_", " "))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if not drawn:
        plt.close(fig)
        return []
    fig.tight_layout()
    return _save(fig, stem)
