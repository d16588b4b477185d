"""Pieces shared by every stage: schedules, metric accumulation, evaluation."""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas_cli.runtime.compile import run_eagerly


def cosine_lr(epoch: int, total: int, lr_max: float, lr_min: float) -> float:
    """lr_e = lr_min + (lr_max - lr_min) * (1 + cos(pi * e / T)) / 2, constant within an epoch."""
    return lr_min + (lr_max - lr_min) * 0.5 * (1.0 + math.cos(math.pi * epoch / max(total, 1)))


def linear_tau(epoch: int, epochs: int, tau_max: float, tau_min: float, warmup: int = 0,
               schedule: str = "paper") -> float:
    """GDAS temperature at the start of 0-based ``epoch`` of ``epochs`` (discrepancies.md #8).

    ``paper``: tau_max at the first post-warmup epoch, tau_min at the last:
    tau_e = tau_max - (tau_max - tau_min) * (e - W) / (E - 1 - W) (W = 0: GDAS's schedule).
    ``official`` ([G] EGDAS): the same numerator but divided by (E - 1), so with W > 0 the
    temperature never reaches tau_min (about 3.42 at the end of 150 epochs with W = 50).
    """
    if schedule == "official":
        span = max(epochs - 1, 1)
    elif schedule == "paper":
        span = max(epochs - 1 - warmup, 1)
    else:
        raise ValueError(f"unknown tau schedule '{schedule}'")
    frac = min(max(epoch - warmup, 0) / span, 1.0)
    return tau_max - (tau_max - tau_min) * frac


class Accumulator:
    """Sums of loss / correct / count kept on the device: no host sync per step."""

    def __init__(self, device: torch.device) -> None:
        self.loss = torch.zeros((), device=device, dtype=torch.float64)
        self.correct = torch.zeros((), device=device, dtype=torch.float64)
        self.count = 0

    def add(self, loss: Tensor, correct: Tensor, count: int) -> None:
        self.loss += loss.detach().double() * count
        self.correct += correct.detach().double()
        self.count += count

    def result(self) -> tuple[float, float]:
        n = max(self.count, 1)
        return float(self.loss) / n, float(self.correct) / n


@torch.no_grad()
def evaluate(forward: Callable[[Tensor], Tensor], batches: Iterable[tuple[Tensor, Tensor]],
             device: torch.device, max_batches: int | None = None,
             finish: Callable[[Accumulator], tuple[float, float]] = Accumulator.result) -> tuple[float, float]:
    """Mean loss and accuracy of ``forward`` over ``batches`` (caller sets eval mode).

    ``finish`` turns the sums into the result; data-parallel callers pass a
    reduction over ranks (each rank then evaluates its rows of every batch).
    """
    acc = Accumulator(device)
    with run_eagerly():  # a compiled network would recompile for eval mode and every batch size
        for i, (x, y) in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            if y.shape[0] == 0:  # this rank's share of a small last batch
                continue
            logits = forward(x).float()
            acc.add(F.cross_entropy(logits, y), (logits.argmax(1) == y).sum(), y.shape[0])
    return finish(acc)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's lr; a device-tensor lr (CUDA-graph steps) is updated in place."""
    for g in opt.param_groups:
        if isinstance(g["lr"], Tensor):
            g["lr"].fill_(lr)
        else:
            g["lr"] = lr


def train_mode(module: nn.Module, mode: bool) -> None:
    module.train(mode)
