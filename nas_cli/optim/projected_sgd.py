"""Projected (Euclidean) gradient descent on simplices.

The Euclidean counterpart of exponentiated gradient: ``theta <- Proj(theta - eta*g)``
with the exact sort-based projection onto the probability simplex.  Useful to
isolate the effect of the geometry (GAEA's argument) with everything else fixed.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

import torch
from torch import Tensor

from nas_cli.optim.base import PerParameterOptimizer

from nas_cli.arch.segments import segment_apply


def project_simplex(v: Tensor) -> Tensor:
    """Euclidean projection of each row (last dim) onto the probability simplex."""
    n = v.shape[-1]
    u, _ = torch.sort(v, dim=-1, descending=True)
    css = u.cumsum(-1) - 1
    k = torch.arange(1, n + 1, device=v.device, dtype=v.dtype)
    cond = u - css / k > 0
    rho = (cond * k).amax(-1, keepdim=True)  # largest k with u_k > (css_k)/k
    tau = css.gather(-1, rho.long() - 1) / rho
    return (v - tau).clamp_min(0)


class ProjectedSGD(PerParameterOptimizer):
    def __init__(self, params: Iterable[Any], lr: float = 0.1, segments: Optional[tuple[int, ...]] = None) -> None:
        super().__init__(params, dict(lr=lr, segments=segments))

    def update(self, p: Tensor, group: dict[str, Any]) -> None:
        p.copy_(segment_apply(p - group["lr"] * p.grad, group["segments"], project_simplex))
