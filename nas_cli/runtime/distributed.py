"""Data parallelism across processes (``torchrun``): one run spread over GPUs or nodes.

Launch any stage under ``torchrun --nproc_per_node=N -m nas_cli ...`` (or a
SLURM job of N tasks through ``hydra/launcher=slurm``); this module reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` from the environment and
initialises the default process group (NCCL on CUDA, gloo on CPU).

Design (why it looks like this):

* **Global batch, sharded.**  Every rank owns a copy of the device-resident
  dataset and a data stream seeded identically, so every rank draws the *same*
  global batch (indices and augmentation) and keeps rows
  ``[rank*B/W, (rank+1)*B/W)``.  The union of the shards is exactly the
  single-process batch, so a W-rank run follows the 1-process run up to
  BatchNorm statistics (per shard, as with DDP) and float summation order.
* **Weights.**  The evaluation trainer wraps its network in
  ``DistributedDataParallel``.  The search cannot: its objectives take weight
  gradients with ``backward`` *and* with ``autograd.grad`` (unrolled, Moreau),
  keep extra weight copies (F2BA, Moreau) and run arch-only backward passes that
  would leave DDP's reducer waiting; so the search's
  :class:`~nas_cli.objectives.base.StepContext` averages weight gradients
  explicitly (:func:`all_reduce_mean_`, one flat buffer) at the one point every
  weight gradient passes before an optimizer step.
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


def _export_submitit_env() -> None:
    """Inside a multi-task submitit SLURM job, publish its layout the way torchrun does.

    ``hydra/launcher=slurm`` with ``tasks_per_node=N`` runs the Hydra job once per
    SLURM task; submitit knows the ranks and the master host, torch's ``env://``
    initialisation needs them as RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT.  Only a
    submitit job (SUBMITIT_EXECUTOR=slurm) is trusted: a shell inside ``salloc -n 4``
    also has SLURM_NTASKS=4 but is one process, and must not wait for peers.
    """
    if ("RANK" in os.environ or os.environ.get("SUBMITIT_EXECUTOR") != "slurm"
            or int(os.environ.get("SLURM_NTASKS", "1")) <= 1):
        return
    try:
        from submitit.helpers import TorchDistributedEnvironment
    except ImportError:  # pragma: no cover - submitit comes with the launcher plugin
        return
    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def env_world() -> DistContext:
    """The rank layout torchrun (or a multi-task submitit SLURM job) put in the environment."""
    _export_submitit_env()
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


def shard_rows(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """This rank's contiguous rows of ``t`` for evaluation (uneven split allowed; may be empty)."""
    if not ctx.enabled:
        return t
    return torch.tensor_split(t, ctx.world_size)[ctx.rank]


def check_divisible(n: int, what: str, ctx: DistContext) -> None:
    """Fail before training starts (one line) when a global batch cannot be split evenly."""
    if ctx.enabled and n % ctx.world_size:
        raise ConfigError(f"{what}={n} is not divisible by the {ctx.world_size} processes "
                          f"(the global batch is split evenly over ranks)")


def all_reduce_mean_(tensors: Iterable[torch.Tensor | None], ctx: DistContext) -> None:
    """Average tensors in place over ranks (gradients), one collective per dtype.

    The tensors are packed into one flat buffer so a step costs one all-reduce
    instead of one per parameter tensor (hundreds in a DARTS supernet).  ``None``
    entries are skipped: every rank must skip the same ones (true here, because
    ranks hold identical weights and draw identical architecture samples).  The
    all-reduce result is the same bits on every rank, so whatever is computed
    from it next (optimizer steps) stays bit-identical across ranks.
    """
    if not ctx.enabled:
        return
    by_dtype: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for t in tensors:
        if t is not None:
            by_dtype.setdefault((t.dtype, t.device), []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        tdist.all_reduce(flat, op=tdist.ReduceOp.SUM)
        flat.div_(ctx.world_size)
        offset = 0
        for t in group:
            n = t.numel()
            t.copy_(flat[offset:offset + n].view_as(t))
            offset += n


def average_buffers_(modules: Iterable[torch.nn.Module], ctx: DistContext) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over ranks, in place.

    With ``runtime.sync_bn=false`` BN normalises with *per-rank* batch statistics
    (plain DDP), so each rank's running estimates drift apart.  The search averages
    them at the end of every epoch: all ranks then hold the same model, so
    validation, the selector, the checkpoint and a resumed run do not depend on the
    rank.  (The average of the ranks' running means equals the running mean of the
    global batch means; running variances miss the between-shard part of the
    variance.)  With the default synchronised BN the ranks' statistics are already
    identical and the average changes nothing.
    """
    if not ctx.enabled:
        return
    all_reduce_mean_([b for m in modules for b in m.buffers() if torch.is_floating_point(b)], ctx)


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
