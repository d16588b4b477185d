"""The objective seam: how weight and architecture updates interleave.

An objective receives a :class:`StepContext` (model, architecture parameters,
both optimizers, precision settings) and performs one search step.  The
context supplies the shared building blocks -- ``weight_grads``, ``arch_grads``,
``apply_arch_grads`` -- so a new objective (unrolled, F2BA, Moreau, ...) is one
file that combines them, and every objective works with every architecture
optimizer and search space.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas_cli.arch import ArchParameters
from nas_cli.registry import Registry
from nas_cli.runtime import distributed as dist
from nas_cli.runtime.device import autocast


@dataclass
class Batch:
    x: Tensor
    y: Tensor


@dataclass
class StepOut:
    """What the search loop accumulates for metrics (all on device, detached)."""

    loss: Tensor
    correct: Tensor
    count: int


class StepContext:
    """Everything an objective needs for one step; no Python branching on tensor values."""

    def __init__(
        self,
        model: nn.Module,
        arch: ArchParameters,
        w_opt: torch.optim.Optimizer,
        a_opt: torch.optim.Optimizer,
        device: torch.device,
        grad_clip: float | None = 5.0,
        arch_grad_clip: float | None = None,
        entropy_reg: float = 0.0,
        precision: str = "fp32",
        channels_last: bool = False,
        loss_fn: Callable[..., Tensor] | None = None,
        per_example_clip: float | None = None,
        dist_ctx: dist.DistContext | None = None,
    ) -> None:
        self.model = model
        self.arch = arch
        self.w_opt = w_opt
        self.a_opt = a_opt
        self.device = device
        self.grad_clip = grad_clip
        self.arch_grad_clip = arch_grad_clip
        self.entropy_reg = entropy_reg
        self.precision = precision
        self.channels_last = channels_last
        #: criterion ``loss_fn(out, y, reduction=...)``; cross-entropy unless a testbed supplies another
        self.loss_fn: Callable[..., Tensor] = loss_fn if loss_fn is not None else F.cross_entropy
        #: XNAS: clip d loss_n / d arch elementwise to [-L, L] per example before averaging (None = off)
        self.per_example_clip = per_example_clip
        #: the arch gradient handed to the optimizer by the last ``apply_arch_grads`` (diagnostics, tests)
        self.last_arch_grads: list[Tensor] | None = None
        #: data-parallel layout: every batch an objective sees is this rank's shard of the global
        #: batch, and gradients are averaged over ranks in ``clip_weights`` / ``apply_arch_grads``
        self.dist = dist_ctx if dist_ctx is not None else dist.DistContext()

    # ------------------------------------------------------------------ forward
    @property
    def weight_lr(self) -> float:
        return float(self.w_opt.param_groups[0]["lr"])

    def arch_tensors(self) -> list[nn.Parameter]:
        return [p for _, p in self.arch.tensors()]

    def forward(self, x: Tensor, arch_weights: dict[str, Tensor], model: nn.Module | None = None) -> Tensor:
        model = model if model is not None else self.model
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.precision):
            out = model(x, arch_weights)
        return out.float()

    def loss(self, batch: Batch, arch_weights: dict[str, Tensor], model: nn.Module | None = None) -> tuple[Tensor, Tensor]:
        logits = self.forward(batch.x, arch_weights, model)
        return self.loss_fn(logits, batch.y), logits

    def correct(self, logits: Tensor, y: Tensor) -> Tensor:
        """Number of correct predictions (0 for non-classification criteria such as MSE)."""
        if logits.dim() == 2 and not torch.is_floating_point(y):
            return (logits.argmax(1) == y).sum()
        return torch.zeros((), dtype=torch.long, device=logits.device)

    # ------------------------------------------------------------------ weight copies
    @staticmethod
    def weight_params(model: nn.Module) -> list[nn.Parameter]:
        return [p for p in model.parameters() if p.requires_grad]

    def copy_model(self) -> nn.Module:
        """An independent copy of the supernet (same weights and buffers) for objectives
        that keep extra weight copies (F2BA's lower-level copy, Moreau's auxiliary copy)."""
        import copy

        return copy.deepcopy(self.model)

    def weight_optimizer_like(self, model: nn.Module) -> torch.optim.Optimizer:
        """SGD with the weight optimizer's momentum / weight decay / nesterov for another copy;
        call :meth:`sync_lr` before stepping it so it follows the weight lr schedule."""
        g = self.w_opt.param_groups[0]
        return torch.optim.SGD(self.weight_params(model), lr=g["lr"], momentum=g.get("momentum", 0.0),
                               weight_decay=g.get("weight_decay", 0.0), nesterov=g.get("nesterov", False))

    def sync_lr(self, opt: torch.optim.Optimizer) -> None:
        for g in opt.param_groups:
            g["lr"] = self.weight_lr

    @staticmethod
    def module_bytes(*modules: nn.Module) -> int:
        """Bytes of the parameters and buffers of ``modules`` (extra-memory accounting)."""
        return sum(t.numel() * t.element_size() for m in modules for t in [*m.parameters(), *m.buffers()])

    @staticmethod
    def optimizer_state_bytes(opt: torch.optim.Optimizer) -> int:
        return sum(v.numel() * v.element_size() for st in opt.state.values() for v in st.values()
                   if isinstance(v, Tensor))

    # ------------------------------------------------------------------ weights
    def weight_grads(self, batch: Batch, model: nn.Module | None = None,
                     params: list[Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """Forward with *detached* arch weights, backward into the model's ``.grad``.

        Detaching means no architecture gradient is computed (or leaks into the
        next arch step) during weight steps.
        """
        model = model if model is not None else self.model
        with torch.no_grad():
            aw = self.arch.weights(sample=True)
        aw = {k: v.detach() for k, v in aw.items()}
        loss, logits = self.loss(batch, aw, model)
        model.zero_grad(set_to_none=True)
        loss.backward()
        return loss.detach(), logits.detach()

    def average_over_ranks(self, tensors: list[Tensor]) -> None:
        """Average ``tensors`` in place over data-parallel ranks (no-op in one process).

        Objectives call it for gradients they use *before* an optimizer step (the
        unrolled virtual step, Moreau's auxiliary copy): each rank's loss is the mean
        over its equal shard, so the rank average is the global-batch gradient.
        """
        dist.all_reduce_mean_(tensors, self.dist)

    def reduce_weight_grads(self, model: nn.Module | None = None) -> None:
        """Average ``model``'s ``.grad`` over ranks (the data-parallel weight-gradient reduction)."""
        if self.dist.enabled:
            model = model if model is not None else self.model
            self.average_over_ranks([p.grad for p in model.parameters() if p.grad is not None])

    def clip_weights(self, model: nn.Module | None = None) -> None:
        """Average the weight gradients over ranks, then clip: every objective calls this
        between its backward pass and its weight-optimizer step, so it is the one place where
        data parallelism reduces weight gradients (clipping the *global* gradient, as one
        process would)."""
        model = model if model is not None else self.model
        self.reduce_weight_grads(model)
        if self.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)

    def weight_step(self, batch: Batch) -> StepOut:
        loss, logits = self.weight_grads(batch)
        self.clip_weights()
        self.w_opt.step()
        return StepOut(loss, self.correct(logits, batch.y), batch.y.shape[0])

    # ------------------------------------------------------------------ architecture
    def arch_grads(self, batch: Batch, model: nn.Module | None = None) -> tuple[list[Tensor], Tensor]:
        """d loss / d arch tensors (fp32) on ``batch`` with ``model``'s current weights.

        Uses ``autograd.grad`` w.r.t. the arch tensors only, so the weight-gradient
        kernels of the backward pass are skipped and model ``.grad`` is untouched.
        With ``per_example_clip`` set (XNAS) the per-example gradients are clipped first.
        """
        params = self.arch_tensors()
        aw = self.arch.weights(sample=True)
        if self.per_example_clip:
            grads, loss = self.per_example_clipped_grads(batch, aw, params, float(self.per_example_clip), model)
            if self.entropy_reg:
                reg = torch.autograd.grad(self.entropy_reg * self.arch.entropy_regularizer(), params,
                                          allow_unused=True)
                grads = [g + r if r is not None else g for g, r in zip(grads, reg)]
            return grads, loss
        loss, _ = self.loss(batch, aw, model)
        total = loss + self.entropy_reg * self.arch.entropy_regularizer() if self.entropy_reg else loss
        grads = torch.autograd.grad(total, params, allow_unused=True)
        return _zeros_for_none(grads, params), loss.detach()

    def per_example_clipped_grads(self, batch: Batch, aw: dict[str, Tensor], params: list[Tensor], clip: float,
                                  model: nn.Module | None = None, chunk: int = 64) -> tuple[list[Tensor], Tensor]:
        """mean_n clip(d loss_n / d params, [-clip, clip]) from ONE forward pass.

        The per-example rows of the Jacobian come from ``autograd.grad`` with one-hot
        cotangents and ``is_grads_batched=True`` (a vmapped backward), ``chunk`` rows at a
        time.  This is the exact per-example gradient of each example's loss term *within
        the batch* (batch-norm statistics couple examples, as they do in the forward pass);
        ops without a batching rule fall back to one backward per example.
        """
        logits = self.forward(batch.x, aw, model)
        losses = self.loss_fn(logits, batch.y, reduction="none").reshape(-1)
        n = losses.shape[0]
        sums = [torch.zeros_like(p, dtype=torch.float32) for p in params]
        eye = torch.eye(n, device=losses.device, dtype=losses.dtype)
        for start in range(0, n, chunk):
            rows = eye[start:start + chunk]
            try:
                per = torch.autograd.grad(losses, params, grad_outputs=rows, retain_graph=True,
                                          is_grads_batched=True, allow_unused=True)
                per = [g if g is not None else torch.zeros((rows.shape[0], *p.shape), device=p.device)
                       for g, p in zip(per, params)]
            except RuntimeError:  # no vmap rule for some op: one backward per example
                per = [torch.stack(_zeros_for_none(torch.autograd.grad(losses[i], params, retain_graph=True,
                                                                       allow_unused=True), params))
                       for i in range(start, min(start + chunk, n))]
                per = [torch.stack([row[j] for row in per]) for j in range(len(params))]
            for s, g in zip(sums, per):
                s.add_(g.float().clamp(-clip, clip).sum(0))
        return [s / n for s in sums], losses.detach().mean()

    def apply_arch_grads(self, grads: list[Tensor]) -> None:
        """Average ``grads`` over ranks, clip, and step the architecture optimizer.

        Architecture gradients come from ``autograd.grad`` (not ``.backward``), so no DDP
        hook would see them: the explicit average here keeps the architecture parameters
        bit-identical on every rank (same all-reduce result, same optimizer arithmetic).
        """
        params = self.arch_tensors()
        grads = [g.detach().float() for g in grads]
        self.average_over_ranks(grads)
        self.last_arch_grads = grads
        for p, g in zip(params, grads):
            p.grad = g
        if self.arch_grad_clip:
            nn.utils.clip_grad_norm_(params, self.arch_grad_clip)
        self.a_opt.step()
        for p in params:
            p.grad = None

    def arch_step(self, batch: Batch) -> Tensor:
        grads, loss = self.arch_grads(batch)
        self.apply_arch_grads(grads)
        return loss


class Objective(ABC):
    """One search step = ``inner_steps`` weight steps around one architecture step."""

    #: whether the training set is split into weight / architecture parts
    uses_split: ClassVar[bool] = True
    #: whether ``step`` is free of host synchronisation and Python state that changes between
    #: steps, so the whole step can be captured once in a CUDA graph and replayed
    graph_safe: ClassVar[bool] = False

    def __init__(self, cfg: Any, ctx: StepContext) -> None:
        self.cfg = cfg
        self.ctx = ctx

    @abstractmethod
    def step(self, w_batch: Batch, next_arch_batch: Callable[[], Batch], do_arch: bool) -> StepOut:
        """Run one weight step, preceded/followed by an arch step when ``do_arch``."""

    def eval_model(self) -> nn.Module:
        """Network whose accuracy is reported and whose weights pair with the genotype."""
        return self.ctx.model

    def hypergradient_scale(self) -> float:
        """Factor turning the last arch gradient into a hypergradient estimate (Moreau scales
        its upper-level term by 1/c_k); used by the testbed's known-answer checks."""
        return 1.0

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        """Called by the search loop before each epoch (0-based); penalty schedules hook in here."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def extra_memory_bytes(self) -> int:
        """Bytes held beyond model + arch + optimizers (extra weight copies)."""
        return 0

    def extra_modules(self) -> list[nn.Module]:
        """Networks the objective keeps besides ``ctx.model`` (their BN statistics are
        averaged over data-parallel ranks with the supernet's)."""
        return []


def _zeros_for_none(grads: Any, params: list[Tensor]) -> list[Tensor]:
    return [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, params)]


OBJECTIVES: Registry[type[Objective]] = Registry("objective")
