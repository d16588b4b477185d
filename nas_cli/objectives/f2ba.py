"""F2BA: fully first-order bilevel approximation (Chen, Xu, Zhang; spec objectives.md "F2BA").

Penalty reformulation with upper level ``f = L_val`` and lower level ``g = L_tr``::

    L_lambda(a) = min_y [f(a,y) + lambda*g(a,y)] - lambda*min_z g(a,z)

Two weight copies are kept: ``y`` (penalised) and ``z`` (plain lower level).  Each
search step

1. ``z <- SGD(grad_z g(a,z))``;  ``y <- SGD(grad_y f(a,y)/lambda + grad_y g(a,y))``
   (both SGD with the search's momentum, weight decay, grad clip and lr schedule);
2. ``h = grad_a f(a,y) + lambda*(grad_a g(a,y) - grad_a g(a,z))``;  ``a <- ArchOpt(h)``.

No second derivatives: ``h`` is one backward pass of the scalar
``f(a,y) + lambda*(g(a,y) - g(a,z))`` w.r.t. the architecture tensors only, with
one architecture sample shared by the three terms (so a hard/Gumbel relaxation
does not add sampling noise to the difference).

``y`` *is* the supernet (``ctx.model``, stepped by the search's weight optimizer):
it is the network that is evaluated and checkpointed as "model", so F2BA costs one
extra copy (``z`` and its momentum buffer), reported by ``extra_memory_bytes``.
``z``, its optimizer state and the current ``lambda`` travel in ``state_dict``.

``lambda`` follows ``lambda_schedule`` per epoch (``constant``: lambda0; ``exp``:
lambda0*lambda_growth**epoch; ``linear``: lambda0 + lambda_growth*epoch), capped at
``lambda_max``.  ``step_order=weight_first`` (default) is the order above;
``arch_first`` takes the hypergradient before the weight updates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from nas_cli.config import ObjectiveConfig, register_schema
from nas_cli.errors import ConfigError
from nas_cli.objectives.base import OBJECTIVES, Batch, Objective, StepContext, StepOut, _zeros_for_none

SCHEDULES = ("constant", "linear", "exp")


@dataclass
class F2BAConfig(ObjectiveConfig):
    #: initial penalty lambda
    lambda0: float = 1.0
    #: how lambda grows per epoch: constant | linear | exp
    lambda_schedule: str = "exp"
    #: exp: multiplicative factor per epoch; linear: additive increment per epoch
    lambda_growth: float = 1.1
    #: cap on lambda
    lambda_max: float = 100.0
    step_order: str = "weight_first"


register_schema("objective", "f2ba", F2BAConfig)


def penalty_at(epoch: int, lambda0: float, schedule: str, growth: float, cap: float) -> float:
    """The penalty of a (0-based) epoch; a pure function of the epoch, so resume needs no extra state."""
    if schedule == "constant":
        lam = lambda0
    elif schedule == "linear":
        lam = lambda0 + growth * epoch
    else:
        lam = lambda0 * growth ** epoch
    return min(lam, cap)


@OBJECTIVES.register("f2ba")
class F2BA(Objective):
    uses_split = True

    def __init__(self, cfg: Any, ctx: StepContext) -> None:
        super().__init__(cfg, ctx)
        if cfg.lambda_schedule not in SCHEDULES:
            raise ConfigError(f"objective.lambda_schedule must be one of {', '.join(SCHEDULES)}, "
                              f"got '{cfg.lambda_schedule}'")
        if not cfg.lambda0 > 0 or not cfg.lambda_max >= cfg.lambda0:
            raise ConfigError(f"objective.lambda0 must be > 0 and <= objective.lambda_max "
                              f"(got {cfg.lambda0}, {cfg.lambda_max})")
        if cfg.lambda_schedule == "exp" and not cfg.lambda_growth >= 1:
            raise ConfigError(f"objective.lambda_growth must be >= 1 for the exp schedule, got {cfg.lambda_growth}")
        if cfg.lambda_schedule == "linear" and not cfg.lambda_growth >= 0:
            raise ConfigError(f"objective.lambda_growth must be >= 0 for the linear schedule, got {cfg.lambda_growth}")
        self.z = ctx.copy_model()
        self.z_opt = ctx.weight_optimizer_like(self.z)
        self.lam = float(cfg.lambda0)

    # ------------------------------------------------------------------ schedule
    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        c = self.cfg
        self.lam = penalty_at(epoch, float(c.lambda0), str(c.lambda_schedule), float(c.lambda_growth),
                              float(c.lambda_max))

    # ------------------------------------------------------------------ step
    def step(self, w_batch: Batch, next_arch_batch: Callable[[], Batch], do_arch: bool) -> StepOut:
        val = next_arch_batch()  # y's update needs the upper-level loss every step
        weight_first = self.cfg.step_order == "weight_first"
        if do_arch and not weight_first:
            self.ctx.apply_arch_grads(self.hypergradient(w_batch, val))
        out = self.inner_step(w_batch, val)
        if do_arch and weight_first:
            self.ctx.apply_arch_grads(self.hypergradient(w_batch, val))
        return out

    def inner_step(self, w_batch: Batch, val: Batch) -> StepOut:
        ctx = self.ctx
        # z: plain lower level
        self.z.train(ctx.model.training)
        ctx.weight_grads(w_batch, model=self.z)
        ctx.clip_weights(self.z)
        ctx.sync_lr(self.z_opt)
        self.z_opt.step()
        # y: lower level + upper level / lambda (one backward through both forwards)
        with torch.no_grad():
            aw = {k: v.detach() for k, v in ctx.arch.weights(sample=True).items()}
        loss_g, logits = ctx.loss(w_batch, aw)
        loss_f, _ = ctx.loss(val, aw)
        ctx.model.zero_grad(set_to_none=True)
        (loss_g + loss_f / self.lam).backward()
        ctx.clip_weights()
        ctx.w_opt.step()
        return StepOut(loss_g.detach(), ctx.correct(logits.detach(), w_batch.y), w_batch.y.shape[0])

    def hypergradient(self, w_batch: Batch, val: Batch) -> list[torch.Tensor]:
        """``grad_a f(a,y) + lambda*(grad_a g(a,y) - grad_a g(a,z))`` (+ the entropy regulariser)."""
        ctx = self.ctx
        params = ctx.arch_tensors()
        aw = ctx.arch.weights(sample=True)
        f_y, _ = ctx.loss(val, aw)
        g_y, _ = ctx.loss(w_batch, aw)
        g_z, _ = ctx.loss(w_batch, aw, self.z)
        total = f_y + self.lam * (g_y - g_z)
        if ctx.entropy_reg:
            total = total + ctx.entropy_reg * ctx.arch.entropy_regularizer()
        return _zeros_for_none(torch.autograd.grad(total, params, allow_unused=True), params)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {"z": self.z.state_dict(), "z_opt": self.z_opt.state_dict(), "lambda": self.lam}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.z.load_state_dict(state["z"])
        self.z_opt.load_state_dict(state["z_opt"])
        self.lam = float(state["lambda"])

    def extra_modules(self) -> list[torch.nn.Module]:
        return [self.z]

    def extra_memory_bytes(self) -> int:
        momentum = float(self.ctx.w_opt.param_groups[0].get("momentum", 0.0))
        params = sum(p.numel() * p.element_size() for p in self.ctx.weight_params(self.z))
        return self.ctx.module_bytes(self.z) + (params if momentum else 0)
