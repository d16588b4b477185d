"""How one search step is executed: the seam between the search loop and the objective.

The search loop (and ``nas-bench``) call ``stepper(batch, next_arch_batch, do_arch)``.
:class:`EagerStepper` simply runs the objective's step (the reference path).
Faster executors (CUDA-graph replay of the whole step) plug in behind the same
call, so the loop, the benchmark and the tests exercise exactly one code path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol

import torch

from nas_cli.objectives import Batch, StepOut
from nas_cli.runtime.graphs import NO_CUDA, GraphedStep, graphs_enabled, warm_call

if TYPE_CHECKING:
    from nas_cli.stages.search import SearchRun


class Stepper(Protocol):
    #: short name shown in the run header and in benchmark tables ("eager", "cuda_graph")
    name: str

    def __call__(self, batch: Batch, next_arch_batch: Callable[[], Batch], do_arch: bool) -> StepOut: ...


class EagerStepper:
    """The reference path: the objective's Python step, op by op."""

    name = "eager"

    def __init__(self, run: "SearchRun") -> None:
        self.objective = run.objective

    def __call__(self, batch: Batch, next_arch_batch: Callable[[], Batch], do_arch: bool) -> StepOut:
        return self.objective.step(batch, next_arch_batch, do_arch)


class CudaGraphStepper:
    """Replays the whole search step (arch step + weight step) from a CUDA graph.

    One graph per step kind (weight only; weight + architecture), sharing one
    memory pool since they never run concurrently.  Batches are drawn by the
    usual device-resident streams outside the graph and copied into the graph's
    input buffers, so the data order and augmentation are those of the eager
    path.  Whether a step kind consumes an architecture batch is observed during
    its eager warm-up steps (single-level ERM with ``same_batch`` does not), so
    the architecture stream advances exactly as it would eagerly.
    """

    name = "cuda_graph"

    def __init__(self, run: "SearchRun", warmup: int = 2) -> None:
        self.run = run
        self.objective = run.objective
        self.warmup = max(int(warmup), 1)
        self.warm: dict[bool, int] = {False: 0, True: 0}
        self.graphs: dict[bool, GraphedStep] = {}
        self.uses_arch_batch: dict[bool, bool] = {}
        self._pool = torch.cuda.graph_pool_handle()

    def __call__(self, batch: Batch, next_arch_batch: Callable[[], Batch], do_arch: bool) -> StepOut:
        if self.warm[do_arch] < self.warmup:
            return self._warm_step(batch, next_arch_batch, do_arch)
        inputs = [batch.x, batch.y]
        if self.uses_arch_batch[do_arch]:
            ab = next_arch_batch()
            inputs += [ab.x, ab.y]
        loss, correct = self._graph(do_arch)(*inputs)
        return StepOut(loss, correct, int(batch.y.shape[0]))

    def _warm_step(self, batch: Batch, next_arch_batch: Callable[[], Batch], do_arch: bool) -> StepOut:
        """An ordinary eager step (optimizer state, cuDNN plans); notes whether an arch batch is drawn."""
        self.warm[do_arch] += 1
        used: list[bool] = []

        def lazy() -> Batch:
            used.append(True)
            return next_arch_batch()
        out = warm_call(lambda: self.objective.step(batch, lazy, do_arch),
                        side_stream=self.warm[do_arch] == self.warmup)
        self.uses_arch_batch[do_arch] = bool(used)
        return out

    def _graph(self, do_arch: bool) -> GraphedStep:
        if do_arch not in self.graphs:
            def fn(x: torch.Tensor, y: torch.Tensor, *arch_xy: torch.Tensor) -> tuple[torch.Tensor, ...]:
                out = self.objective.step(Batch(x, y), lambda: Batch(*arch_xy), do_arch)
                return out.loss, out.correct
            self.graphs[do_arch] = GraphedStep(fn, warmup=0, pool=self._pool)
        return self.graphs[do_arch]


def graph_blocker(cfg: Any, device: torch.device) -> str | None:
    """Why a search with this config cannot replay its step from a CUDA graph (None: it can).

    Decided from the config alone (the classes the registries name), so ``build_run`` can pick the
    graph-ready weight optimizer before anything is built."""
    from nas_cli.arch.hard_forward import masked_blocker
    from nas_cli.arch.sampling import SAMPLINGS
    from nas_cli.objectives import OBJECTIVES
    from nas_cli.optim import ARCH_OPTIMIZERS
    from nas_cli.runtime import distributed as dist

    if device.type != "cuda":
        return NO_CUDA
    if not getattr(OBJECTIVES.get(str(cfg.objective.name)), "graph_safe", False):
        return f"objective '{cfg.objective.name}' synchronises with the host inside its step"
    if not ARCH_OPTIMIZERS.get(str(cfg.optimizer.name)).graph_safe:
        return f"architecture optimizer '{cfg.optimizer.name}' keeps host-side state"
    sampling = str(cfg.method.relaxation.sampling)
    if SAMPLINGS.get(sampling).one_hot:
        if str(cfg.runtime.hard_forward).lower() == "selected":
            return f"'{sampling}' sampling selects ops on the host every step (runtime.hard_forward=selected)"
        why = masked_blocker(cfg)
        if why is not None:
            return f"'{sampling}' sampling selects ops on the host every step ({why})"
    if dist.context().enabled:
        return "data-parallel search runs eagerly"
    return None


def uses_graphs(cfg: Any, device: torch.device) -> bool:
    """Whether the search step will be replayed from a CUDA graph (runtime.cuda_graphs + support);
    ``runtime.cuda_graphs=true`` on a run that cannot be captured is a ConfigError."""
    return graphs_enabled(cfg.runtime.cuda_graphs, graph_blocker(cfg, device))


def build_search_stepper(run: "SearchRun") -> Stepper:
    """The step executor ``runtime.cuda_graphs`` asks for (auto: graphs when the run supports them)."""
    return CudaGraphStepper(run) if uses_graphs(run.cfg, run.device) else EagerStepper(run)
