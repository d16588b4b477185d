"""``runtime.hard_forward``: how a one-hot sample (GDAS, GAEA GDAS, RS-WS) runs through the supernet.

* ``selected`` -- the reference: only the sampled op of each edge runs.  Which op that is must be
  known on the host, so every forward copies the sample's argmax to the host and the step runs
  eagerly (on the H200 the NB201 GDAS step was host-bound at 0.055 s).
* ``masked`` -- every op runs in the fused cells with the sample's entries, which are exact zeros
  for the unselected ops, plus each node's zero-valued ``rest`` term (``nb201_fused.py``).  Same
  value and same gradients as ``selected``; what would still differ is held back: BN running
  statistics of unselected ops are not updated, and :class:`FreezeUnselected` keeps their weights
  and momentum through the optimizer step (a reference step skips parameters without a gradient:
  no weight decay, no momentum).  No host sync, so the step can be CUDA-graph replayed.  Training
  forwards run only the selected one of an edge's two conv ops (``nb201_fused.SELECT_CONVS``); the
  parameter-free ops run for every edge.
* ``auto`` -- ``masked`` exactly when that lets the step be replayed from a CUDA graph.

The masked form needs a space that implements it (NB201), its fused cells (``runtime.fused``) and
a first-order objective: the other objectives step copies of the supernet with their own
optimizers, which :class:`FreezeUnselected` does not cover.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from nas_cli.errors import ConfigError
from nas_cli.runtime.masked_update import choose_, snapshot

MODES = ("auto", "selected", "masked")


def one_hot_sampling(cfg: Any) -> bool:
    """Whether the method draws one-hot samples (the setting matters only then)."""
    from nas_cli.arch.sampling import SAMPLINGS

    return bool(SAMPLINGS.get(str(cfg.method.relaxation.sampling)).one_hot)


def masked_blocker(cfg: Any) -> str | None:
    """Why this run's one-hot samples cannot run masked (None: they can)."""
    from nas_cli.objectives import OBJECTIVES
    from nas_cli.spaces import SPACES

    if not getattr(SPACES.get(str(cfg.search_space.name)), "supports_masked_hard", False):
        return f"the {cfg.search_space.name} space runs only the sampled op of each edge"
    if not bool(cfg.runtime.fused):
        return "the masked forward runs the fused cells (runtime.fused=false)"
    if not getattr(OBJECTIVES.get(str(cfg.objective.name)), "graph_safe", False):
        return f"objective '{cfg.objective.name}' steps supernet copies the masked forward does not cover"
    return None


def resolve_hard_forward(cfg: Any, graphs: bool) -> str | None:
    """``selected`` / ``masked`` for one-hot sampling methods, None for mixtures.

    ``graphs``: whether the step will be CUDA-graph replayed (``stepper.uses_graphs``, which
    already counts a masked ``auto`` as capturable).  An explicit ``masked`` that cannot run is a
    one-line ConfigError."""
    if not one_hot_sampling(cfg):
        return None
    mode = str(cfg.runtime.hard_forward).lower()
    if mode not in MODES:
        raise ConfigError(f"runtime.hard_forward must be one of {', '.join(MODES)}, got '{mode}'")
    if mode == "masked":
        why = masked_blocker(cfg)
        if why is not None:
            raise ConfigError(f"runtime.hard_forward=masked: {why}; use runtime.hard_forward=auto or selected")
        return "masked"
    if mode == "auto" and graphs:
        return "masked"
    return "selected"


class FreezeUnselected:
    """Optimizer hooks that hold back the update of every op the last training forward did not select.

    The model gives ``op_parameter_owners()`` (parameter, owner entry of each row) once and
    ``last_used`` (the one-hot pattern of its last training forward) each step.  The pre-hook saves
    the parameters and their momentum buffers, the post-hook puts the saved values back in the rows
    of unselected ops -- exactly the reference step, which skips a parameter whose gradient is None.
    Momentum buffers are created as zeros before the first step: with dampening 0 the first update
    ``0·momentum + d`` equals the reference's ``buf = d``, and it keeps every parameter's state
    present, as fused (capturable) SGD requires.

    Why multi-tensor ops over one flat mask: per parameter, a mask gather, a compare, two clones and
    two ``where`` + copies made about 1,000 tiny kernels of the NB201 GDAS step (H200 profile,
    2026-12-02: 723 copy kernels alone); here one gather builds the mask of every element of every
    op parameter, and the save and the restore are a few multi-tensor ops (``runtime/masked_update.py``).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
        self.model = model
        self._owner: Tensor | None = None  # flattened owner entry of every element of every op parameter
        self._params: list[Tensor] = []
        self._saved: list[tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]] = []
        self.handles = (optimizer.register_step_pre_hook(self._before),
                        optimizer.register_step_post_hook(self._after))

    def _layout(self) -> tuple[list[Tensor], Tensor]:
        if self._owner is None:
            pairs = self.model.op_parameter_owners()  # type: ignore[operator]
            self._params = [p for p, _ in pairs]
            for p, rows in pairs:
                if len(rows) != p.shape[0]:
                    raise ValueError(f"owner rows ({len(rows)}) do not match a parameter of shape {tuple(p.shape)}")
            if not pairs:
                self._owner = torch.empty(0, dtype=torch.int32)
            else:  # each row's owner repeated over the row's elements, parameters one after another
                self._owner = torch.cat([torch.tensor(rows, dtype=torch.int32).repeat_interleave(p.numel() // len(rows))
                                         for p, rows in pairs]).to(self._params[0].device)
        return self._params, self._owner

    def _before(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._saved = []
        used = getattr(self.model, "last_used", None)
        with torch.no_grad():
            for group in opt.param_groups:
                if group.get("momentum", 0) and group.get("dampening", 0):
                    raise ConfigError("the masked one-hot forward needs SGD without dampening")
                if group.get("momentum", 0):
                    for p in group["params"]:
                        if p.grad is not None and opt.state[p].get("momentum_buffer") is None:
                            opt.state[p]["momentum_buffer"] = torch.zeros_like(p)
            if used is None:
                return
            params, owner = self._layout()
            if not params:
                return
            keep = used.reshape(-1).index_select(0, owner) > 0
            sizes = [p.numel() for p in params]
            keep_by_dtype: dict[torch.dtype, tuple[list[Tensor], list[Tensor]]] = {}
            for dtype in {p.dtype for p in params}:
                k = keep.to(dtype)
                keep_by_dtype[dtype] = (list(k.split(sizes)), list((1 - k).split(sizes)))
            keeps = [keep_by_dtype[p.dtype][0][i].view_as(p) for i, p in enumerate(params)]
            drops = [keep_by_dtype[p.dtype][1][i].view_as(p) for i, p in enumerate(params)]
            # the parameters and, where present, their momentum buffers (same masks)
            bufs = [(i, opt.state[p]["momentum_buffer"]) for i, p in enumerate(params)
                    if p in opt.state and opt.state[p].get("momentum_buffer") is not None]
            for tensors, k, d in ((params, keeps, drops), ([b for _, b in bufs], [keeps[i] for i, _ in bufs],
                                                            [drops[i] for i, _ in bufs])):
                if tensors:
                    self._saved.append((tensors, snapshot(tensors), k, d))

    def _after(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        for tensors, saved, keeps, drops in self._saved:
            choose_(tensors, saved, keeps, drops)  # the new values where kept, the saved ones elsewhere
        self._saved = []

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
