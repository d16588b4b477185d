"""First-order objectives: single level (ERM) and bilevel.

Both take the architecture gradient at the current weights; they differ only
in where the architecture batch comes from (another training batch vs. the
held-out validation split), which the search loop arranges from ``uses_split``.
"""

from __future__ import annotations

from typing import Callable

from nas_cli.objectives.base import OBJECTIVES, Batch, Objective, StepOut


class FirstOrder(Objective):
    graph_safe = True

    def _arch_batch(self, w_batch: Batch, next_arch_batch: Callable[[], Batch]) -> Batch:
        return next_arch_batch()

    def step(self, w_batch: Batch, next_arch_batch: Callable[[], Batch], do_arch: bool) -> StepOut:
        weight_first = self.cfg.step_order == "weight_first"
        if do_arch and not weight_first:
            self.ctx.arch_step(self._arch_batch(w_batch, next_arch_batch))
        out = self.ctx.weight_step(w_batch)
        if do_arch and weight_first:
            self.ctx.arch_step(self._arch_batch(w_batch, next_arch_batch))
        return out


@OBJECTIVES.register("single_level")
class SingleLevel(FirstOrder):
    """ERM: weights and architecture minimise the same training loss (GAEA's ERM setting)."""

    uses_split = False

    def _arch_batch(self, w_batch: Batch, next_arch_batch: Callable[[], Batch]) -> Batch:
        return w_batch if getattr(self.cfg, "same_batch", False) else next_arch_batch()


@OBJECTIVES.register("bilevel")
class Bilevel(FirstOrder):
    """First-order bilevel: architecture gradient of the validation loss at current weights."""

    uses_split = True
