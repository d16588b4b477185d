"""Per-parameter optimizer state keyed by state_dict names, so it survives a change of layout.

The fused supernets store the parameters of many reference modules in stacked tensors; their
``state_dict`` presents views of those tensors under the reference keys.  A PyTorch optimizer's
state is keyed by parameter *position*, so a momentum buffer saved by a fused run means nothing to
a per-edge run (and vice versa).  Here a per-parameter tensor (a momentum buffer has its
parameter's shape) is translated through the model's own state_dict layout: the parameter data is
swapped for the buffer for a moment, and the state_dict's views of it are read (saving) or written
(loading).  Whatever layout translation the model's state_dict hooks do applies unchanged, so
``runtime.fused`` becomes a pure execution setting: a run can resume with either value.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Mapping

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

#: per-parameter SGD state entries that have the parameter's shape
TENSOR_STATE = ("momentum_buffer",)


@contextmanager
def _swapped(model: nn.Module, values: Mapping[str, Tensor]) -> Iterator[dict[str, Tensor]]:
    """Temporarily give each named parameter the data ``values[name]``; yields the state_dict
    entries that are views of those tensors (one or more keys per parameter)."""
    params = dict(model.named_parameters())
    saved = {n: p.data for n, p in params.items()}
    try:
        owner: dict[int, str] = {}
        for n, p in params.items():
            p.data = values[n]
            owner[p.data.untyped_storage().data_ptr()] = n
        views = {k: t for k, t in model.state_dict().items()
                 if t.untyped_storage().data_ptr() in owner}
        covered = {owner[t.untyped_storage().data_ptr()] for t in views.values()}
        if covered != set(params):
            missing = sorted(set(params) - covered)[:3]
            raise RuntimeError(f"state_dict does not expose parameters {missing} as views")
        yield views
    finally:
        for n, p in params.items():
            p.data = saved[n]


def optimizer_state_by_name(model: nn.Module, opt: Optimizer) -> dict[str, dict[str, Tensor]]:
    """``{entry: {state_dict key: tensor}}`` for the tensor entries of ``opt``'s per-parameter state."""
    names = {id(p): n for n, p in model.named_parameters()}
    out: dict[str, dict[str, Tensor]] = {}
    for entry in TENSOR_STATE:
        values = {names[id(p)]: s[entry] for p, s in opt.state.items()
                  if id(p) in names and isinstance(s.get(entry), Tensor)}
        if not values:
            continue
        # parameters without that state read as NaN and are left out below
        full = {n: values.get(n, torch.full_like(p, float("nan"))) for n, p in model.named_parameters()}
        with _swapped(model, full) as views:
            out[entry] = {k: v.clone().cpu() for k, v in views.items() if not torch.isnan(v).all()}
    return out


def load_optimizer_state_by_name(model: nn.Module, opt: Optimizer, saved: Mapping[str, Any],
                                 by_name: Mapping[str, Mapping[str, Tensor]]) -> dict[str, Any]:
    """The positional ``opt.state_dict()`` for *this* model's layout, from a saved state dict
    (hyper-parameters) and its :func:`optimizer_state_by_name` (tensors).

    A parameter with no saved buffer gets a zero buffer where others of its stacked tensor have
    one: for SGD (no dampening) a zero momentum buffer behaves exactly like a fresh one."""
    params = dict(model.named_parameters())
    order = [p for g in opt.param_groups for p in g["params"]]
    names = {id(p): n for n, p in params.items()}
    state: dict[int, dict[str, Tensor]] = {}
    for entry, tensors in by_name.items():
        full = {n: torch.zeros_like(p) for n, p in params.items()}
        touched: set[int] = set()
        with _swapped(model, full) as views:
            for key, value in tensors.items():
                if key not in views:
                    raise KeyError(f"optimizer state for '{key}' has no parameter in this model")
                views[key].copy_(value)
                touched.add(views[key].untyped_storage().data_ptr())
        for i, p in enumerate(order):
            if full[names[id(p)]].untyped_storage().data_ptr() in touched:
                state.setdefault(i, {})[entry] = full[names[id(p)]]
    groups, start = [], 0
    for g_saved, g in zip(saved["param_groups"], opt.param_groups):
        groups.append({**g_saved, "params": list(range(start, start + len(g["params"])))})
        start += len(g["params"])
    return {"state": state, "param_groups": groups}
