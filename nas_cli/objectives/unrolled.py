"""DARTS second order: the unrolled bilevel hypergradient (spec methods.md §3.2, [D] ``_backward_step_unrolled``).

Data parallel: ``grad_w L_tr`` (virtual step) and ``v`` are averaged over ranks
before use; ``g - xi*h`` is linear in the per-rank losses, so the average that
``apply_arch_grads`` takes is the global hypergradient.

The architecture gradient is that of ``L_val(w', a)`` at the *virtual* weights
``w' = w - xi*(mu*m + grad_w L_tr(w, a) + lambda*w)`` (one SGD-momentum step with the
real optimizer's momentum buffer ``m``, momentum ``mu`` and weight decay ``lambda``;
``xi`` = the current weight learning rate).  The second-order term is a
Hessian-vector product done by central finite differences, so no second
derivatives are ever taken::

    g  = grad_a L_val(w', a);  v = grad_w' L_val(w', a);  eps = 0.01 / ||v||
    h  = [grad_a L_tr(w + eps v, a) - grad_a L_tr(w - eps v, a)] / (2 eps)
    arch grad = g - xi * h

The virtual step and the perturbations are applied to the real supernet in place
and undone from one snapshot of its parameters *and buffers* (batch-norm running
statistics), so after the architecture step the weights, momentum buffers and
BN statistics are bit-identical to before; the extra memory is that one copy.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from nas_cli.objectives.base import OBJECTIVES, Batch, Objective, StepOut, _zeros_for_none


@OBJECTIVES.register("bilevel_unrolled")
class BilevelUnrolled(Objective):
    """Second-order DARTS (bilevel, validation split)."""

    uses_split = True

    def step(self, w_batch: Batch, next_arch_batch: Callable[[], Batch], do_arch: bool) -> StepOut:
        weight_first = self.cfg.step_order == "weight_first"
        if do_arch and not weight_first:
            self.arch_step(w_batch, next_arch_batch())
        out = self.ctx.weight_step(w_batch)
        if do_arch and weight_first:
            self.arch_step(w_batch, next_arch_batch())
        return out

    def arch_step(self, train_batch: Batch, val_batch: Batch) -> None:
        self.ctx.apply_arch_grads(self.hypergradient(train_batch, val_batch))

    def hypergradient(self, train_batch: Batch, val_batch: Batch) -> list[Tensor]:
        """``g - xi*h`` for the current arch parameters (the real weights are left untouched)."""
        ctx = self.ctx
        model = ctx.model
        params = ctx.weight_params(model)
        arch_params = ctx.arch_tensors()
        group = ctx.w_opt.param_groups[0]
        xi = float(group["lr"])
        mu = float(group.get("momentum", 0.0))
        wd = float(group.get("weight_decay", 0.0))
        # the module's own tensors (not state_dict(): a fused supernet's state_dict uses reference names)
        live = {**dict(model.named_parameters()), **dict(model.named_buffers())}
        snapshot = {k: v.detach().clone() for k, v in live.items()}
        orig = [snapshot[n] for n, p in model.named_parameters() if p.requires_grad]  # aligned with params
        try:
            # 1. virtual step w' = w - xi*(mu*m + dL_tr/dw + wd*w)
            with torch.no_grad():
                aw_det = {k: v.detach() for k, v in ctx.arch.weights(sample=True).items()}
            loss_tr, _ = ctx.loss(train_batch, aw_det, model)
            d_w = _zeros_for_none(torch.autograd.grad(loss_tr, params, allow_unused=True), params)
            ctx.average_over_ranks(d_w)  # data parallel: the virtual step uses the global gradient
            with torch.no_grad():
                for p, d in zip(params, d_w):
                    buf = ctx.w_opt.state.get(p, {}).get("momentum_buffer")
                    step = d + wd * p if buf is None else mu * buf + d + wd * p
                    p.sub_(xi * step)
            # 2. g and v on the validation batch at w'
            aw = ctx.arch.weights(sample=True)
            loss_val, _ = ctx.loss(val_batch, aw, model)
            total = loss_val + ctx.entropy_reg * ctx.arch.entropy_regularizer() if ctx.entropy_reg else loss_val
            grads = torch.autograd.grad(total, [*arch_params, *params], allow_unused=True)
            grads = _zeros_for_none(grads, [*arch_params, *params])
            g, v = grads[:len(arch_params)], grads[len(arch_params):]
            ctx.average_over_ranks(v)  # eps and w +- eps*v must be the same on every rank
            # 3. eps = 0.01 / ||v|| over all weight tensors
            v_norm = torch.sqrt(sum((t.float() ** 2).sum() for t in v))
            eps = 0.01 / v_norm.clamp_min(1e-12)
            # 4. finite-difference Hessian-vector product around the *original* w
            aw_fd = ctx.arch.weights(sample=True)  # one sample shared by w+ and w- (hard sampling)
            fd: list[list[Tensor]] = []
            for sign in (1.0, -1.0):
                with torch.no_grad():
                    for p, w0, v_i in zip(params, orig, v):
                        p.copy_(w0 + sign * eps * v_i)
                loss_pm, _ = ctx.loss(train_batch, aw_fd, model)
                fd.append(_zeros_for_none(torch.autograd.grad(loss_pm, arch_params, retain_graph=sign > 0,
                                                              allow_unused=True), arch_params))
            h = [(gp - gm) / (2 * eps) for gp, gm in zip(*fd)]
            return [gi - xi * hi for gi, hi in zip(g, h)]
        finally:
            with torch.no_grad():  # restore weights *and* BN statistics exactly
                for k, t in live.items():
                    t.copy_(snapshot[k])

    def extra_memory_bytes(self) -> int:
        return self.ctx.module_bytes(self.ctx.model)

