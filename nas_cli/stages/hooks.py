"""Per-epoch hooks of the search loop: extra metrics computed from the epoch's outcome.

A hook factory takes the composed config and the search space and returns a hook
or None (not configured).  The loop runs every configured hook after each epoch
and merges what ``on_epoch_end`` returns into that epoch's ``metrics.jsonl`` row,
and what ``on_finish`` returns into ``summary.json`` -- so a new per-epoch metric
(benchmark look-ups, probes, ...) is one registered factory, not a loop edit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from nas_cli.registry import Registry
from nas_cli.runtime.console import console

if TYPE_CHECKING:  # pragma: no cover
    from nas_cli.spaces.base import SearchSpace
    from nas_cli.stages.search import SearchRun


class EpochHook:
    def on_epoch_end(self, run: "SearchRun", row: dict[str, Any]) -> dict[str, Any]:
        return {}

    def on_finish(self, run: "SearchRun", summary: dict[str, Any]) -> dict[str, Any]:
        return {}


EPOCH_HOOKS: Registry[Callable[[Any, "SearchSpace"], Optional[EpochHook]]] = Registry("epoch hook")


def build_epoch_hooks(cfg: Any, space: "SearchSpace") -> list[EpochHook]:
    hooks = []
    for name in EPOCH_HOOKS.names():
        hook = EPOCH_HOOKS.get(name)(cfg, space)
        if hook is not None:
            hooks.append(hook)
    return hooks


# ------------------------------------------------------------------ oracle
class OracleHook(EpochHook):
    """Benchmark test accuracy of the epoch's genotype and its regret (best in table - current)."""

    def __init__(self, oracle: Any, dataset: str) -> None:
        self.oracle = oracle
        self.dataset = dataset
        self.best = oracle.best(dataset)

    def _lookup(self, run: "SearchRun", genotype_json: dict[str, Any]) -> str:
        return run.space.genotype_str(run.space.genotype_from_json(genotype_json))

    def on_epoch_end(self, run: "SearchRun", row: dict[str, Any]) -> dict[str, Any]:
        acc = self.oracle.test_acc(self._lookup(run, row["genotype"]), self.dataset)
        return {"oracle_test_acc": acc, "oracle_regret": None if acc is None else self.best - acc}

    def on_finish(self, run: "SearchRun", summary: dict[str, Any]) -> dict[str, Any]:
        geno = summary["genotype_str"]
        return {"oracle": {"dataset": self.dataset, "best": self.best,
                           "test_acc": {d: self.oracle.test_acc(geno, d) for d in self.oracle.datasets}}}


def _oracle_factory(cfg: Any, space: "SearchSpace") -> Optional[EpochHook]:
    from nas_cli.oracle import ORACLES

    o = cfg.get("oracle")
    benchmark = getattr(space, "benchmark", None)
    if o is None or not o.get("name"):
        if benchmark:
            console.print(f"[dim]no oracle configured: {benchmark} look-ups (oracle_test_acc) are not logged; "
                          f"add oracle={benchmark} oracle.path=<table or benchmark file>[/]")
        return None
    oracle = ORACLES.get(str(o.name))(o)
    dataset = o.get("dataset") or (cfg.dataset.name if cfg.dataset.name in oracle.datasets
                                   else oracle.datasets[0])
    console.print(f"oracle: {oracle.describe()}; logging {dataset} test accuracy")
    return OracleHook(oracle, str(dataset))


EPOCH_HOOKS.add("oracle", _oracle_factory)
