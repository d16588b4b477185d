"""NAS-Bench-201 oracle: the benchmark's 200-epoch test accuracies of the 15,625 cells.

Two sources, chosen by ``oracle.path``:

* the official benchmark file (``NAS-Bench-201-v1_0-e61699.pth``, ``v1_1-096897.pth``,
  NATS-Bench ``NATS-tss-v1_0-3ffb9-simple``): read through the official API package
  when it is installed (``nats_bench`` or ``nas_201_api``; optional, never a
  dependency), otherwise directly from its on-disk layout -- a torch-saved dict
  ``{"meta_archs": [arch_str, ...], "arch2infos": {index: {"less": ..., "full": ArchResults
  state}}, "evaluated_indexes": [...]}`` where an ArchResults state holds
  ``all_results[(dataset, seed)]["eval_acc1es"]["<split>@<last epoch>"]``;
* a compact table (``.csv``: ``arch_str,cifar10,cifar100,imagenet16_120``; or ``.json``:
  ``{"accuracies": {arch_str: {dataset: acc}}}``) that :func:`export_table` writes from
  either source, so a run needs neither the 2 GB file nor the API package.

Which number is "test accuracy" (nasbench201.md §7, the NB201 paper's protocol):
CIFAR-10 = benchmark dataset ``cifar10`` (trained on all 50k), split ``ori-test``;
CIFAR-100 and ImageNet16-120 = split ``x-test``; mean over the available seeds,
at the last of the 200 epochs ('200' hp).  Self-check against [P] Table 2:
ResNet 93.97 / 70.86 / 43.63, optimum 94.37 / 73.51 / 47.31.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
from pathlib import Path
from typing import Any, Mapping

import torch

from nas_cli.errors import ConfigError, DataError
from nas_cli.oracle.base import ORACLES, Oracle
from nas_cli.runtime.io import atomic_write_json, atomic_write_text
from nas_cli.spaces.nb201 import arch_to_str, str_to_arch

#: nas_cli dataset name -> (benchmark dataset name, test split)
NB201_DATASETS: dict[str, tuple[str, str]] = {
    "cifar10": ("cifar10", "ori-test"),
    "cifar100": ("cifar100", "x-test"),
    "imagenet16_120": ("ImageNet16-120", "x-test"),
}
TABLE_FORMAT = "nas_cli-nb201-table-1"


class NB201Oracle(Oracle):
    """In-memory table arch_str -> {dataset: test accuracy (%)}."""

    def __init__(self, table: Mapping[str, Mapping[str, float]], source: str = "") -> None:
        self.table = {arch_to_str(str_to_arch(a)): {d: float(v) for d, v in accs.items() if v is not None}
                      for a, accs in table.items()}
        if not self.table:
            raise DataError(f"NB201 oracle table {source or ''} is empty")
        self.datasets = tuple(d for d in NB201_DATASETS if any(d in r for r in self.table.values()))
        self.source = source
        self._best = {d: max(r[d] for r in self.table.values() if d in r) for d in self.datasets}

    def test_acc(self, genotype: str, dataset: str) -> float | None:
        row = self.table.get(arch_to_str(str_to_arch(genotype)))
        return None if row is None else row.get(dataset)

    def best(self, dataset: str) -> float:
        if dataset not in self._best:
            raise ConfigError(f"the NB201 oracle has no '{dataset}' accuracies; it has: {', '.join(self.datasets)}")
        return self._best[dataset]

    def describe(self) -> str:
        return f"NAS-Bench-201 ({len(self.table):,} architectures, {', '.join(self.datasets)}) from {self.source}"


# --------------------------------------------------------------- benchmark file
def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _results_acc(arch_results: Mapping[str, Any], bench_dataset: str, split: str) -> float | None:
    """Mean over seeds of the last-epoch accuracy on ``split`` (ArchResults state dict)."""
    accs = []
    for key, res in (arch_results.get("all_results") or {}).items():
        name = key[0] if isinstance(key, (tuple, list)) else key
        if name != bench_dataset:
            continue
        evals = res.get("eval_acc1es") or {}
        epochs = res.get("epochs")
        k = f"{split}@{int(epochs) - 1}" if epochs else None
        if k is None or k not in evals:  # fall back to the largest epoch stored for the split
            cands = [e for e in evals if str(e).startswith(f"{split}@")]
            if not cands:
                continue
            k = max(cands, key=lambda e: int(str(e).split("@")[1]))
        accs.append(float(evals[k]))
    return _mean(accs)


def table_from_benchmark_dict(data: Mapping[str, Any], hp: str = "200") -> dict[str, dict[str, float]]:
    """Compact table from the benchmark file's dict (NB201 v1.0/v1.1 'full' or NATS '200' entries)."""
    for key in ("meta_archs", "arch2infos"):
        if key not in data:
            raise DataError(f"not a NAS-Bench-201 benchmark file: no '{key}' entry")
    out: dict[str, dict[str, float]] = {}
    for idx, arch in enumerate(data["meta_archs"]):
        infos = data["arch2infos"].get(idx)
        if infos is None:
            continue
        res = infos.get("full", infos.get(hp)) if isinstance(infos, Mapping) else None
        if res is None:
            continue
        row = {}
        for name, (bench, split) in NB201_DATASETS.items():
            acc = _results_acc(res, bench, split)
            if acc is not None:
                row[name] = acc
        out[str(arch)] = row
    return out


def _table_from_api(path: Path) -> dict[str, dict[str, float]] | None:
    """Through the official API when installed (it knows every file version); None if not installed."""
    for module, factory in (("nats_bench", "create"), ("nas_201_api", "NASBench201API")):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        api = (mod.create(str(path), "tss", fast_mode=False, verbose=False) if factory == "create"
               else getattr(mod, factory)(str(path), verbose=False))
        out: dict[str, dict[str, float]] = {}
        for idx in range(len(api)):
            arch = api.arch(idx) if hasattr(api, "arch") else api.meta_archs[idx]
            row = {}
            for name, (bench, _split) in NB201_DATASETS.items():
                info = api.get_more_info(idx, bench, hp="200", is_random=False)
                row[name] = float(info["test-accuracy"])
            out[str(arch)] = row
        return out
    return None


def load_benchmark_file(path: Path, use_api: bool = True) -> dict[str, dict[str, float]]:
    table = _table_from_api(path) if use_api else None
    if table is not None:
        return table
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - anything unreadable is a data problem
        raise DataError(f"cannot read NAS-Bench-201 file {path} without its API package "
                        f"({type(e).__name__}); install nats_bench or export a compact table") from None
    if not isinstance(data, Mapping):
        raise DataError(f"{path} is not a NAS-Bench-201 benchmark file (holds {type(data).__name__})")
    return table_from_benchmark_dict(data)


# ---------------------------------------------------------------- compact table
def read_table(path: Path) -> dict[str, dict[str, float]]:
    text = path.read_text()
    if path.suffix.lower() == ".json":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        table = obj.get("accuracies", obj) if isinstance(obj, dict) else None
        if not isinstance(table, dict):
            raise DataError(f"{path}: expected {{'accuracies': {{arch_str: {{dataset: acc}}}}}}")
        return table
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or "arch_str" not in rows[0]:
        raise DataError(f"{path}: a compact NB201 table needs an 'arch_str' column")
    return {r["arch_str"]: {d: float(v) for d, v in r.items() if d != "arch_str" and v not in (None, "")}
            for r in rows}


def export_table(table: Mapping[str, Mapping[str, float]], path: str | Path) -> Path:
    """Write a compact table (.json or .csv by suffix), atomically."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return atomic_write_json(path, {"format": TABLE_FORMAT, "datasets": list(NB201_DATASETS),
                                        "accuracies": table})
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["arch_str", *NB201_DATASETS])
    for arch, accs in table.items():
        w.writerow([arch, *("" if accs.get(d) is None else repr(float(accs[d])) for d in NB201_DATASETS)])
    return atomic_write_text(path, buf.getvalue())


def load_nb201_oracle(path: str | Path, use_api: bool = True) -> NB201Oracle:
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise DataError(f"NB201 oracle file not found: {p} (oracle.path)")
    if p.suffix.lower() in (".csv", ".json"):
        return NB201Oracle(read_table(p), str(p))
    return NB201Oracle(load_benchmark_file(p, use_api), str(p))


def _build(cfg: Any) -> NB201Oracle:
    if not cfg.get("path"):
        raise ConfigError("oracle=nb201 needs oracle.path=<benchmark .pth or compact .csv/.json table>")
    return load_nb201_oracle(cfg.path)


ORACLES.add("nb201", _build)
