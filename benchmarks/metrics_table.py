"""Print the per-epoch metrics.jsonl of finished runs side by side (for device logs).

usage: python benchmarks/metrics_table.py LABEL=RUN_DIR [LABEL=RUN_DIR ...]
Columns: whichever of train_acc, val_acc, test_acc, entropy_ops, entropy_edges, epoch_time exist.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

KEYS = ("train_loss", "train_acc", "val_acc", "test_acc", "entropy_ops", "entropy_edges", "epoch_time")


def main(args: list[str]) -> None:
    for item in args:
        label, _, path = item.partition("=")
        files = sorted(Path(path).rglob("metrics.jsonl"))
        if not files:
            print(f"{label}: no metrics.jsonl under {path}")
            continue
        for f in files:
            for line in f.read_text().splitlines():
                m = json.loads(line)
                cols = " ".join(f"{k}={m[k]:.4f}" for k in KEYS if isinstance(m.get(k), (int, float)))
                print(f"{label:<10} epoch {m.get('epoch')}: {cols}")


if __name__ == "__main__":
    main(sys.argv[1:])
