"""How effective weights enter the supernet: full mixture or a hard Gumbel sample.

``hard`` is GDAS's straight-through estimator: the forward value is one-hot,
the gradient is that of softmax((log p + G) / tau).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from nas_cli.registry import Registry


class Sampling(ABC):
    name: str
    #: whether samples are one-hot in value (then supernets may run only the selected op per edge)
    one_hot: bool = False

    @abstractmethod
    def __call__(self, weights: Tensor, log_weights: Tensor, tau: float | Tensor,
                 generator: torch.Generator | None) -> Tensor:
        """``tau``: the Gumbel temperature, a float or a 0-dim tensor (same arithmetic)."""


SAMPLINGS: Registry[Sampling] = Registry("sampling")


class Mixture(Sampling):
    name = "mixture"

    def __call__(self, weights: Tensor, log_weights: Tensor, tau: float | Tensor,
                 generator: torch.Generator | None) -> Tensor:
        return weights


class HardGumbel(Sampling):
    name = "hard"
    one_hot = True

    def __call__(self, weights: Tensor, log_weights: Tensor, tau: float | Tensor,
                 generator: torch.Generator | None) -> Tensor:
        # Standard Gumbel noise via -log(Exp(1)); uniform clamped away from 0 so no inf appears
        # (GDAS redraws on inf/NaN; clamping makes that event impossible without a host sync).
        u = torch.rand(log_weights.shape, generator=generator, device=log_weights.device)
        gumbel = -torch.log(-torch.log(u.clamp(1e-20, 1.0 - 1e-7)))
        p = torch.softmax((log_weights + gumbel) / tau, dim=-1)
        hard = torch.nn.functional.one_hot(p.argmax(-1), p.shape[-1]).to(p.dtype)
        return hard - p.detach() + p


class Uniform(Sampling):
    """One architecture drawn uniformly at random per call, independent of the parameters.

    Random search with weight sharing (RS-WS / RSPS, ``methods.md`` §7.2): the
    architecture parameters only fix shapes; no gradient reaches them.
    """

    name = "uniform"
    one_hot = True

    def __call__(self, weights: Tensor, log_weights: Tensor, tau: float | Tensor,
                 generator: torch.Generator | None) -> Tensor:
        idx = torch.randint(0, weights.shape[-1], weights.shape[:-1], generator=generator, device=weights.device)
        return torch.nn.functional.one_hot(idx, weights.shape[-1]).to(weights.dtype)


SAMPLINGS.add("mixture", Mixture())
SAMPLINGS.add("hard", HardGumbel())
SAMPLINGS.add("uniform", Uniform())
