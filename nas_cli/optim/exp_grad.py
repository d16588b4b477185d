"""Exponentiated gradient (mirror descent with the entropic mirror map) on a
product of simplices -- the GAEA architecture update.

Paper (Li et al. 2021, eq. 8), per edge e:
    theta_e <- theta_e * exp(-eta * g_e) / sum_o theta_e,o * exp(-eta * g_e,o)

The official code additionally clamps at 1e-5 (see spec/discrepancies.md #10);
``numerics`` selects the order:

* ``clamp_normalize`` (default, official EDARTS/ImageNet/1Shot1): multiply, clamp, normalise
* ``normalize_clamp`` (official EGDAS): multiply, normalise, clamp (rows may not sum to 1)
* ``paper``: multiply, normalise; no clamp

The update is computed in log space (``log theta - eta*g``, clamp as ``max(., log c)``,
normalise with logsumexp).  That is algebraically identical to the multiplicative
form -- including the clamp, which acts on the *unnormalised* product -- but cannot
overflow or underflow for large gradients.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Optional

import torch
from torch import Tensor
from nas_cli.optim.base import PerParameterOptimizer

from nas_cli.arch.segments import segment_apply

NUMERICS = ("clamp_normalize", "normalize_clamp", "paper")


class ExponentiatedGradient(PerParameterOptimizer):
    """``torch.optim`` optimizer for parameters that live on simplices.

    Param-group options: ``lr`` (eta), ``segments`` (None: every row of the last
    dim is a simplex; a tuple: a 1-D tensor is cut into consecutive simplices),
    ``clamp_min``, ``numerics``.  Edge groups default to no clamp, as in [G].
    """

    def __init__(self, params: Iterable[Any], lr: float = 0.1, clamp_min: float = 1e-5,
                 numerics: str = "clamp_normalize", segments: Optional[tuple[int, ...]] = None) -> None:
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if numerics not in NUMERICS:
            raise ValueError(f"numerics must be one of {NUMERICS}, got {numerics}")
        super().__init__(params, dict(lr=lr, clamp_min=clamp_min, numerics=numerics, segments=segments))

    def update(self, p: Tensor, group: dict[str, Any]) -> None:
        dt = torch.promote_types(p.dtype, torch.float32)  # never update in reduced precision
        p.copy_(eg_update(p.to(dt), p.grad.to(dt), group["lr"], group["segments"], group["numerics"],
                          group["clamp_min"]).to(p.dtype))


def eg_update(theta: Tensor, grad: Tensor, eta: float, segments: Optional[tuple[int, ...]] = None,
              numerics: str = "clamp_normalize", clamp_min: Optional[float] = 1e-5) -> Tensor:
    """One EG step (pure function; see module docstring for the numerics)."""
    logits = theta.clamp_min(1e-38).log() - eta * grad
    if numerics == "clamp_normalize" and clamp_min:
        logits = logits.clamp_min(math.log(clamp_min))
    out = segment_apply(logits, segments, lambda t: torch.softmax(t, dim=-1))
    if numerics == "normalize_clamp" and clamp_min:
        out = out.clamp_min(clamp_min)
    return out
