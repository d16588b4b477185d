"""Data parallelism across processes (``torchrun``): one run spread over GPUs or nodes.

Launch any stage under ``torchrun --nproc_per_node=N -m nas_cli ...``; this
module reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` from the environment and
initialises the default process group (NCCL on CUDA, gloo on CPU).

Design (why it looks like this):

* **Global batch, sharded.**  Every rank owns a copy of the device-resident
  dataset and a data stream seeded identically, so every rank draws the *same*
  global batch (indices and augmentation) and keeps rows
  ``[rank*B/W, (rank+1)*B/W)``.  The union of the shards is exactly the
  single-process batch, so a W-rank run follows the 1-process run up to
  BatchNorm statistics (per shard, as with DDP) and float summation order.
* **Weights** use ``DistributedDataParallel`` (gradients averaged by its reducer).
* **Architecture parameters** are not module parameters (the architecture step
  uses ``torch.autograd.grad`` w.r.t. the architecture tensors only, which the
  DDP reducer never sees), so their gradients are all-reduced explicitly
  (:func:`all_reduce_mean_`) before the architecture optimizer runs; with
  identical initialisation every rank then holds identical architecture
  parameters and exports the same genotype.
* **Only rank 0 writes files**; the others compute the same values.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as tdist

from nas_cli.errors import ConfigError
from nas_cli.runtime.device import resolve_device


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world() -> DistContext:
    """The rank layout torchrun (or SLURM via torchrun) put in the environment."""
    ws = int(os.environ.get("WORLD_SIZE", "1"))
    return DistContext(int(os.environ.get("RANK", "0")), ws, int(os.environ.get("LOCAL_RANK", "0")))


def init(backend: str | None = None, timeout_s: float = 600.0) -> DistContext:
    """Initialise the default process group when WORLD_SIZE > 1 (idempotent)."""
    ctx = env_world()
    if not ctx.enabled or (tdist.is_available() and tdist.is_initialized()):
        return ctx
    if not tdist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(ctx.local_rank)
    tdist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    return ctx


def context() -> DistContext:
    """The current layout (initialising the process group if the environment asks for one)."""
    return init() if env_world().enabled else DistContext()


def local_device(spec: str) -> torch.device:
    """cuda:LOCAL_RANK under torchrun on GPUs, else whatever ``runtime.device`` says."""
    dev = resolve_device(spec)
    if dev.type == "cuda":
        return torch.device("cuda", env_world().local_rank)
    return dev


def shard(x: torch.Tensor, y: torch.Tensor, ctx: DistContext) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's rows of a global batch (equal shards; the batch must divide by the world size)."""
    if not ctx.enabled:
        return x, y
    n = x.shape[0]
    if n % ctx.world_size:
        raise ConfigError(f"batch size {n} is not divisible by the {ctx.world_size} processes")
    k = n // ctx.world_size
    sl = slice(ctx.rank * k, (ctx.rank + 1) * k)
    return x[sl], y[sl]


def all_reduce_mean_(tensors: Iterable[torch.Tensor | None], ctx: DistContext) -> None:
    """Average tensors in place over ranks (architecture gradients)."""
    if not ctx.enabled:
        return
    for t in tensors:
        if t is not None:
            tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
            t.div_(ctx.world_size)


def wrap_ddp(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)


def reduce_metrics(acc: object, ctx: DistContext) -> tuple[float, float]:
    """Global mean loss/accuracy of an :class:`~nas_cli.stages.common.Accumulator` over ranks."""
    if not ctx.enabled:
        return acc.result()  # type: ignore[attr-defined]
    t = torch.stack([acc.loss, acc.correct,  # type: ignore[attr-defined]
                     torch.tensor(float(acc.count), dtype=torch.float64, device=acc.loss.device)])  # type: ignore[attr-defined]
    tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
    n = max(float(t[2]), 1.0)
    return float(t[0]) / n, float(t[1]) / n


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        tdist.barrier()
