"""Shared skeleton of the architecture optimizers that rewrite each parameter in place."""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import Tensor
from torch.optim import Optimizer


class PerParameterOptimizer(Optimizer):
    """Runs the optional closure, then :meth:`update` once per parameter that has a gradient.

    Subclasses only state their update rule; the closure/no-grad/skip-missing-grad
    plumbing every ``torch.optim`` optimizer needs lives here once.
    """

    def update(self, p: Tensor, group: dict[str, Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self.update(p, group)
        return loss
