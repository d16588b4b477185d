"""XNAS architecture update (Nayman et al. 2019) -- a REIMPLEMENTATION FROM THE PAPER'S DESCRIPTION.

The XNAS search code is not public; this follows the GAEA paper's App. C.4 and the
formulas recorded (as unconfirmed) in spec/methods.md §8.  XNAS treats the
candidate ops of an edge as experts and runs exponentiated weights on them:

* per op ``i`` a score ``s_i <- s_i - eta * g_i`` where ``g`` is the minibatch mean of
  the per-example architecture gradients clipped elementwise to ``[-L, L]`` (the
  clipping happens in ``StepContext.arch_grads`` when ``optimizer.per_example_clip``
  is set, because only the gradient computation sees individual examples);
* the op weights are ``softmax(s)`` per edge (equivalently: EG on the simplex
  without clamping, since ``log theta`` and ``s`` differ by a per-edge constant);
* **wipe-out**: op ``i`` is permanently zeroed once ``s_i < max_j s_j - 2*eta*L*(T - t)``,
  i.e. once even the largest possible per-step gain (``eta*L`` for ``i`` and a
  loss of ``eta*L`` for the leader) over the ``T - t`` remaining steps cannot make
  it the best op again.  ``T`` (total architecture steps) is supplied by the search
  loop through :meth:`XNAS.set_horizon` (or ``optimizer.horizon``); without it no op
  is wiped out.

Works on the ``simplex`` parameterisation (the weights are used directly, so the
gradient is ``d loss / d w_i`` as in XNAS); edge tensors (PC-DARTS) get the same rule
per node segment.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Optional

import torch
from torch import Tensor
from nas_cli.arch.segments import segment_apply
from nas_cli.optim.base import PerParameterOptimizer


def _segment_max(x: Tensor, segments: Optional[tuple[int, ...]]) -> Tensor:
    """Per-row (or per-segment, broadcast back to every entry) maximum."""
    return segment_apply(x, segments, lambda t: t.max(dim=-1, keepdim=True).values.expand_as(t))


class XNAS(PerParameterOptimizer):
    """Exponentiated weights with wipe-out on a product of simplices."""

    def __init__(self, params: Iterable[Any], lr: float = 0.1, clip: float = 1.0, wipeout: bool = True,
                 horizon: Optional[int] = None) -> None:
        if lr <= 0 or clip <= 0:
            raise ValueError(f"lr and clip must be > 0, got {lr}, {clip}")
        super().__init__(params, dict(lr=lr, clip=clip, wipeout=wipeout, segments=None))
        self.horizon: Optional[int] = horizon

    def set_horizon(self, total_steps: int) -> None:
        """Total number of architecture steps of the run (T of the wipe-out rule)."""
        if self.horizon is None:
            self.horizon = int(total_steps)

    def update(self, p: Tensor, group: dict[str, Any]) -> None:
        eta, clip, segments = group["lr"], group["clip"], group["segments"]
        st = self.state[p]
        if not st:
            st["score"] = p.detach().float().clamp_min(1e-38).log()
            st["alive"] = p.detach() > 0
            st["t"] = 0
        st["t"] += 1
        score = st["score"] - eta * p.grad.float()
        alive = st["alive"]
        if group["wipeout"] and self.horizon is not None:
            masked = score.masked_fill(~alive, -math.inf)
            remaining = max(self.horizon - st["t"], 0)
            alive = alive & (masked >= _segment_max(masked, segments) - 2 * eta * clip * remaining)
        st["score"], st["alive"] = score, alive
        weights = segment_apply(score.masked_fill(~alive, -math.inf), segments,
                                lambda t: torch.softmax(t, dim=-1))
        p.copy_(weights.to(p.dtype))

    def wiped_fraction(self) -> float:
        """Fraction of architecture entries wiped out so far (diagnostics)."""
        alive = [st["alive"] for st in self.state.values() if "alive" in st]
        if not alive:
            return 0.0
        return 1.0 - float(sum(a.sum() for a in alive)) / float(sum(a.numel() for a in alive))


# --------------------------------------------------------------------------- config + registry entry
from dataclasses import dataclass  # noqa: E402

from nas_cli.config import OptimizerConfig, register_schema  # noqa: E402


@dataclass
class XnasConfig(OptimizerConfig):
    #: L: per-example architecture gradients are clipped elementwise to [-L, L] before averaging
    per_example_clip: float = 1.0
    #: permanently zero ops that can no longer become the best op (XNAS wipe-out)
    wipeout: bool = True
    #: total architecture steps T of the wipe-out rule (null = computed by the search loop)
    horizon: Optional[int] = None


register_schema("optimizer", "xnas", XnasConfig)


def build_xnas(groups: list[dict[str, Any]], cfg: Any) -> XNAS:
    opt = XNAS([{"params": g["params"], "lr": g["lr"]} for g in groups], lr=cfg.lr,
               clip=float(cfg.per_example_clip), wipeout=bool(cfg.wipeout), horizon=cfg.horizon)
    for pg, g in zip(opt.param_groups, groups):
        pg["segments"] = g["segments"]
    return opt
