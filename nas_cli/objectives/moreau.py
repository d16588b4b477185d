"""Moreau-envelope single-loop, Hessian-free bilevel method (spec objectives.md "Moreau envelope").

The lower-level value ``min g`` is replaced by its Moreau envelope
``v_gamma(a,w) = min_theta g(a,theta) + ||theta - w||^2 / (2 gamma)``; the constraint
``g(a,w) - v_gamma(a,w) <= 0`` is penalised with ``c_k = c0*(k+1)**p`` (0 < p < 1/2).
With ``f = L_val``, ``g = L_tr`` and an auxiliary copy ``theta`` (initialised to ``w``),
search step ``k`` is::

    1. theta <- theta - eta  * (grad_theta g(a,theta) + (theta - w)/gamma)
    2. a     <- ArchOpt(grad_a f(a,w)/c_k + grad_a g(a,w) - grad_a g(a,theta))
    3. w     <- w     - beta * (grad_w f(a,w)/c_k + grad_w g(a,w) - (w - theta)/gamma)

Steps 2 and 3 share one backward pass of ``f(a,w)/c_k + g(a,w) - g(a,theta)`` w.r.t.
the architecture tensors and ``w`` (``theta`` is not differentiated), with one
architecture sample for all terms.

Step sizes: ``eta`` null ties theta's plain gradient step to the current weight lr;
``beta`` null hands step 3's gradient to the search's weight optimizer (SGD with
momentum, weight decay and the lr schedule), a number makes it a plain gradient
step of that size (exactly the rule above).  ``k`` counts search steps (also the
ones without an architecture update, e.g. warm-up and ``inner_steps`` > 1, which
run steps 1 and 3 only); ``theta`` and ``k`` are in ``state_dict`` for exact resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from nas_cli.config import ObjectiveConfig, register_schema
from nas_cli.errors import ConfigError
from nas_cli.objectives.base import OBJECTIVES, Batch, Objective, StepContext, StepOut, _zeros_for_none


@dataclass
class MoreauConfig(ObjectiveConfig):
    #: proximal parameter of the Moreau envelope
    gamma: float = 1.0
    #: step size of the auxiliary copy theta (null = current weight lr)
    eta: Optional[float] = None
    #: step size of w (null = use the search's weight optimizer: SGD momentum + lr schedule)
    beta: Optional[float] = None
    #: penalty c_k = c0 * (k+1)**p
    c0: float = 1.0
    p: float = 0.3


register_schema("objective", "moreau", MoreauConfig)


@OBJECTIVES.register("moreau")
class Moreau(Objective):
    uses_split = True

    def __init__(self, cfg: Any, ctx: StepContext) -> None:
        super().__init__(cfg, ctx)
        if not cfg.gamma > 0:
            raise ConfigError(f"objective.gamma must be > 0, got {cfg.gamma}")
        if not cfg.c0 > 0:
            raise ConfigError(f"objective.c0 must be > 0, got {cfg.c0}")
        if not 0 <= cfg.p < 0.5:
            raise ConfigError(f"objective.p must be in [0, 0.5), got {cfg.p}")
        for key in ("eta", "beta"):
            if cfg.get(key) is not None and not cfg[key] > 0:
                raise ConfigError(f"objective.{key} must be > 0 or null, got {cfg[key]}")
        self.theta = ctx.copy_model()
        self.k = 0
        self.last_c = self.c_k

    @property
    def c_k(self) -> float:
        return float(self.cfg.c0) * (self.k + 1) ** float(self.cfg.p)

    def step(self, w_batch: Batch, next_arch_batch: Callable[[], Batch], do_arch: bool) -> StepOut:
        ctx = self.ctx
        val = next_arch_batch()
        gamma = float(self.cfg.gamma)
        c = self.last_c = self.c_k
        w_params = ctx.weight_params(ctx.model)
        th_params = ctx.weight_params(self.theta)
        # 1. theta step on g + ||theta - w||^2 / (2 gamma)
        self.theta.train(ctx.model.training)
        ctx.weight_grads(w_batch, model=self.theta)
        ctx.reduce_weight_grads(self.theta)  # data parallel: theta steps on the global gradient
        eta = float(self.cfg.eta) if self.cfg.eta is not None else ctx.weight_lr
        with torch.no_grad():
            for t, w in zip(th_params, w_params):
                grad = t.grad if t.grad is not None else torch.zeros_like(t)
                t.sub_(eta * (grad + (t - w) / gamma))
        self.theta.zero_grad(set_to_none=True)
        # 2. + 3. one backward of f(w)/c + g(w) - g(theta)
        arch_params = ctx.arch_tensors() if do_arch else []
        if do_arch:
            aw = ctx.arch.weights(sample=True)
        else:
            with torch.no_grad():
                aw = {k: v.detach() for k, v in ctx.arch.weights(sample=True).items()}
        loss_f, _ = ctx.loss(val, aw)
        loss_g, logits = ctx.loss(w_batch, aw)
        total = loss_f / c + loss_g
        if do_arch:
            loss_g_theta, _ = ctx.loss(w_batch, aw, self.theta)
            total = total - loss_g_theta
            if ctx.entropy_reg:
                total = total + ctx.entropy_reg * ctx.arch.entropy_regularizer() / c
        grads = _zeros_for_none(torch.autograd.grad(total, [*arch_params, *w_params], allow_unused=True),
                                [*arch_params, *w_params])
        a_grads, w_grads = grads[:len(arch_params)], grads[len(arch_params):]
        if do_arch:
            ctx.apply_arch_grads(a_grads)
        with torch.no_grad():
            for w, t, gw in zip(w_params, th_params, w_grads):
                w.grad = gw - (w - t) / gamma
        ctx.clip_weights()
        if self.cfg.beta is None:
            ctx.w_opt.step()
        else:
            with torch.no_grad():
                for w in w_params:
                    w.sub_(float(self.cfg.beta) * w.grad)
        ctx.model.zero_grad(set_to_none=True)
        self.k += 1
        return StepOut(loss_g.detach(), ctx.correct(logits.detach(), w_batch.y), w_batch.y.shape[0])

    def hypergradient_scale(self) -> float:
        return self.last_c

    def state_dict(self) -> dict[str, Any]:
        return {"theta": self.theta.state_dict(), "k": self.k}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.theta.load_state_dict(state["theta"])
        self.k = int(state["k"])

    def extra_memory_bytes(self) -> int:
        return self.ctx.module_bytes(self.theta)

    def extra_modules(self) -> list[torch.nn.Module]:
        return [self.theta]
