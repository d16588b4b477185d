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
        return F.cross_entropy(logits, batch.y), logits

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

    def clip_weights(self, model: nn.Module | None = None) -> None:
        model = model if model is not None else self.model
        if self.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)

    def weight_step(self, batch: Batch) -> StepOut:
        loss, logits = self.weight_grads(batch)
        self.clip_weights()
        self.w_opt.step()
        return StepOut(loss, (logits.argmax(1) == batch.y).sum(), batch.y.shape[0])

    # ------------------------------------------------------------------ architecture
    def arch_grads(self, batch: Batch, model: nn.Module | None = None) -> tuple[list[Tensor], Tensor]:
        """d loss / d arch tensors (fp32) on ``batch`` with ``model``'s current weights.

        Uses ``autograd.grad`` w.r.t. the arch tensors only, so the weight-gradient
        kernels of the backward pass are skipped and model ``.grad`` is untouched.
        """
        params = self.arch_tensors()
        aw = self.arch.weights(sample=True)
        loss, _ = self.loss(batch, aw, model)
        total = loss + self.entropy_reg * self.arch.entropy_regularizer() if self.entropy_reg else loss
        grads = torch.autograd.grad(total, params, allow_unused=True)
        return [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, params)], loss.detach()

    def apply_arch_grads(self, grads: list[Tensor]) -> None:
        params = self.arch_tensors()
        for p, g in zip(params, grads):
            p.grad = g.detach().float()
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

    def __init__(self, cfg: Any, ctx: StepContext) -> None:
        self.cfg = cfg
        self.ctx = ctx

    @abstractmethod
    def step(self, w_batch: Batch, next_arch_batch: Callable[[], Batch], do_arch: bool) -> StepOut:
        """Run one weight step, preceded/followed by an arch step when ``do_arch``."""

    def eval_model(self) -> nn.Module:
        """Network whose accuracy is reported and whose weights pair with the genotype."""
        return self.ctx.model

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def extra_memory_bytes(self) -> int:
        """Bytes held beyond model + arch + optimizers (extra weight copies)."""
        return 0


OBJECTIVES: Registry[type[Objective]] = Registry("objective")
