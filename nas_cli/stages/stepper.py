"""How one search step is executed: the seam between the search loop and the objective.

The search loop (and ``nas-bench``) call ``stepper(batch, next_arch_batch, do_arch)``.
:class:`EagerStepper` simply runs the objective's step (the reference path).
Faster executors (CUDA-graph replay of the whole step) plug in behind the same
call, so the loop, the benchmark and the tests exercise exactly one code path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol

from nas_cli.objectives import Batch, StepOut

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


def build_search_stepper(run: "SearchRun") -> Stepper:
    """The step executor ``runtime`` asks for (eager until a faster one is selected)."""
    return EagerStepper(run)
