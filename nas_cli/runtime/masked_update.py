"""Bulk "keep or take back" updates for the masked one-hot forward, in a few multi-tensor ops.

A masked NB201 step runs every op, and what the unselected ops would change must then be undone
exactly: their weights and momentum (``arch/hard_forward.py`` ``FreezeUnselected``) and their BN
running statistics (``spaces/darts_fused.py`` ``HeldBackStats``).  Done per tensor with clones and
``where``s, that was several tiny kernels per tensor: 723 copy kernels alone per NB201 GDAS step in
the H200 profile (2026-12-02).  Here a snapshot of any number of tensors is one multi-tensor op and
the per-element choice two.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def snapshot(tensors: Sequence[Tensor]) -> list[Tensor]:
    """Exact copies of ``tensors`` (``x·1``) in one multi-tensor op."""
    if not tensors:
        return []
    with torch.no_grad():
        return list(torch._foreach_mul(list(tensors), 1.0))


def choose_(tensors: Sequence[Tensor], others: Sequence[Tensor], own: Sequence[Tensor],
            other: Sequence[Tensor]) -> None:
    """In place, per element: keep the tensor's value where ``own`` is 1, take ``others``' where
    ``other`` is 1 (``own`` and ``other`` complementary 0/1 masks of the tensors' shapes and dtypes).

    Computed as ``t·own + o·other``: exact for finite values, up to the sign of a zero."""
    if not tensors:
        return
    with torch.no_grad():
        torch._foreach_mul_(list(tensors), list(own))
        torch._foreach_addcmul_(list(tensors), list(others), list(other))
