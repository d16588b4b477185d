"""The result table (rich) and the JSON document ``nas-bench --json`` writes."""

from __future__ import annotations

import datetime as _dt
import platform
import sys
from pathlib import Path
from typing import Any, Sequence

from rich.table import Table

from nas_cli.runtime.io import atomic_write_json

_MEM_LABEL = {"cuda_max_allocated": "peak GB (CUDA max alloc)", "cpu_peak_rss_delta": "peak GB (CPU RSS delta)"}


def add_speedups(rows: list[dict[str, Any]]) -> None:
    """--compare: each default row gets ``speedup_vs_eager`` = eager median / its median."""
    eager = {r["workload"]: r for r in rows if r["variant"] == "eager" and not r.get("error")}
    for r in rows:
        ref = eager.get(r["workload"])
        if ref is not None and r["variant"] != "eager" and not r.get("error"):
            r["speedup_vs_eager"] = ref["step_s_median"] / r["step_s_median"]


def settings_text(r: dict[str, Any]) -> str:
    return (f"{r['precision']} {'NHWC' if r['channels_last'] else 'NCHW'} {'fused' if r['fused'] else 'unfused'} "
            f"graphs={r['cuda_graphs']} bn={r.get('batchnorm', 'auto')} dw={r.get('depthwise', 'native')} pw={r.get('pointwise', 'native')} "
            f"mix={r.get('mixing', 'native')} "
            f"{'1x1=' + r['conv1x1'] + ' ' if r.get('conv1x1', 'auto') != 'auto' else ''}"
            f"compile={r.get('compile', 'false')}{'/' + r['compile_scope'] if r.get('compile_scope') else ''} "
            f"{'streams=2 ' if r.get('branch_streams') else ''}"
            f"{'EAGER-FALLBACKS=' + str(len(r['compile_fallbacks'])) + ' ' if r.get('compile_fallbacks') else ''}"
            f"{r['stepper']}")


def target_text(r: dict[str, Any]) -> str:
    text = f"{r['target_step_s']:.3g} s"
    return text + (f", {r['target_mem_gb']:g} GB" if r.get("target_mem_gb") is not None else "")


def render(rows: Sequence[dict[str, Any]], title: str) -> Table:
    compare = any(r["variant"] != "default" for r in rows)
    kind = next((r["peak_mem_kind"] for r in rows if not r.get("error")), "cuda_max_allocated")
    ok = [r for r in rows if not r.get("error")]
    # one shared settings string goes under the table: the table then fits a terminal's width
    shared = settings_text(ok[0]) if ok and len({settings_text(r) for r in ok}) == 1 else None
    table = Table(title=title, title_justify="left",
                  caption=f"settings: {shared}" if shared else None, caption_justify="left")
    cols = ["workload", *(["variant"] if compare else []), "sizes", "median s", "mean s", "img/s",
            _MEM_LABEL.get(kind, "peak GB"), f"{rows[0]['target_device'] if rows else 'H100'} target",
            *([] if shared else ["settings"]), *(["speed-up"] if compare else [])]
    for c in cols:
        table.add_column(c, overflow="fold", no_wrap=c == "workload", ratio=2 if c == "settings" else None,
                         justify="right" if c in ("median s", "mean s", "img/s") else "left")
    for r in rows:
        head = [r["workload"], *([r["variant"]] if compare else [])]
        if r.get("error"):
            tail = 1 + (0 if shared else 1) + (1 if compare else 0)  # target [, settings] [, speed-up]
            table.add_row(*head, f"[red]failed: {r['error']}[/]", *[""] * (len(cols) - len(head) - 1 - tail),
                          target_text(r), *[""] * (tail - 1))
            continue
        mem = "-" if r["peak_mem_gb"] is None else f"{r['peak_mem_gb']:.3f}"
        speed = ([f"{r['speedup_vs_eager']:.2f}x" if r.get("speedup_vs_eager") is not None else
                  ("ref" if r["variant"] == "eager" else "-")] if compare else [])
        table.add_row(*head, r["sizes"], f"{r['step_s_median']:.4f}", f"{r['step_s_mean']:.4f}",
                      f"{r['images_per_s']:.0f}", mem, target_text(r),
                      *([] if shared else [settings_text(r)]), *speed)
    return table


def write_json(path: str | Path, rows: Sequence[dict[str, Any]], options: dict[str, Any],
               complete: bool = True) -> Path:
    """The results document, written atomically; ``complete`` is false while workloads remain."""
    import torch

    doc = {
        "format": 1,
        "complete": complete,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": ["nas-bench", *sys.argv[1:]],
        "options": options,
        "host": {"python": platform.python_version(), "torch": torch.__version__,
                 "cuda": torch.version.cuda, "platform": platform.platform()},
        "rows": list(rows),
    }
    return atomic_write_json(path, doc)
