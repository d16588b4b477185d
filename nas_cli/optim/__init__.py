"""Architecture optimizers, looked up by ``optimizer.name``.

Each entry says which parameterisations it can update; an impossible pairing
(Adam on simplex points, EG on unconstrained logits) is a config error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.optim import Optimizer

from nas_cli.optim.exp_grad import ExponentiatedGradient, eg_update
from nas_cli.optim.projected_sgd import ProjectedSGD, project_simplex
from nas_cli.optim.xnas import XNAS, build_xnas
from nas_cli.registry import Registry


@dataclass(frozen=True)
class ArchOptimizerEntry:
    build: Callable[[list[dict[str, Any]], Any], Optimizer]
    supports: frozenset[str]
    #: False for "none": the search loop then runs no architecture steps at all (random search)
    trains: bool = True
    #: the step is device-only (no host-side counters), so it can run inside a CUDA graph
    graph_safe: bool = True


ARCH_OPTIMIZERS: Registry[ArchOptimizerEntry] = Registry("architecture optimizer")


def _strip(groups: list[dict[str, Any]], keep: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{k: v for k, v in g.items() if k in ("params", "lr") + keep} for g in groups]


def _exp_grad(groups: list[dict[str, Any]], cfg: Any) -> Optimizer:
    gs = []
    for g in groups:
        gs.append({"params": g["params"], "lr": g["lr"], "segments": g["segments"],
                   # [G] clamps op weights only; edge weights are multiplied and normalised
                   "clamp_min": cfg.clamp_min if g["kind"] == "ops" else None})
    return ExponentiatedGradient(gs, lr=cfg.lr, numerics=cfg.numerics)


def _adam(groups: list[dict[str, Any]], cfg: Any) -> Optimizer:
    return torch.optim.Adam(_strip(groups, ()), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)


def _sgd(groups: list[dict[str, Any]], cfg: Any) -> Optimizer:
    return torch.optim.SGD(_strip(groups, ()), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _projected_sgd(groups: list[dict[str, Any]], cfg: Any) -> Optimizer:
    return ProjectedSGD(_strip(groups, ("segments",)), lr=cfg.lr)


class Frozen(Optimizer):
    """No architecture updates (random search with weight sharing samples instead of learning)."""

    def __init__(self, params: Any) -> None:
        super().__init__(params, {"lr": 0.0})

    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        return None


def _none(groups: list[dict[str, Any]], cfg: Any) -> Optimizer:
    return Frozen(_strip(groups, ()))


ARCH_OPTIMIZERS.add("exp_grad", ArchOptimizerEntry(_exp_grad, frozenset({"simplex"})))
ARCH_OPTIMIZERS.add("adam", ArchOptimizerEntry(_adam, frozenset({"logits"})))
ARCH_OPTIMIZERS.add("sgd", ArchOptimizerEntry(_sgd, frozenset({"logits"})))
ARCH_OPTIMIZERS.add("projected_sgd", ArchOptimizerEntry(_projected_sgd, frozenset({"simplex"})))
ARCH_OPTIMIZERS.add("none", ArchOptimizerEntry(_none, frozenset({"logits", "simplex"}), trains=False))
ARCH_OPTIMIZERS.add("xnas", ArchOptimizerEntry(build_xnas, frozenset({"simplex"}), graph_safe=False))


def build_arch_optimizer(groups: list[dict[str, Any]], cfg: Any) -> Optimizer:
    return ARCH_OPTIMIZERS.get(cfg.name).build(groups, cfg)


__all__ = ["ARCH_OPTIMIZERS", "ExponentiatedGradient", "ProjectedSGD", "XNAS", "build_arch_optimizer",
           "eg_update", "project_simplex"]
