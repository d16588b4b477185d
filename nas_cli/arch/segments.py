"""Helpers for 'edge' tensors: one flat vector cut into consecutive segments,
each segment one distribution (the incoming edges of one node)."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor


def segment_apply(x: Tensor, segments: Sequence[int] | None, fn: Callable[[Tensor], Tensor]) -> Tensor:
    """Apply ``fn`` (acting on the last dim) per row, or per segment of a 1-D tensor.

    Static Python structure only (segment lengths come from the space), so this
    is safe inside captured CUDA graphs.
    """
    if segments is None:
        return fn(x)
    return torch.cat([fn(part) for part in torch.split(x, list(segments), dim=-1)], dim=-1)


def segment_ids(segments: Sequence[int], device: torch.device | None = None) -> Tensor:
    return torch.repeat_interleave(torch.arange(len(segments), device=device),
                                   torch.tensor(list(segments), device=device))


def uniform_like_segments(n: int, segments: Sequence[int] | None, rows: int | None = None) -> Tensor:
    """Uniform distribution per row (``segments`` None, shape (rows, n)) or per segment (shape (n,))."""
    if segments is None:
        assert rows is not None
        return torch.full((rows, n), 1.0 / n)
    return torch.cat([torch.full((k,), 1.0 / k) for k in segments])


def entropy(p: Tensor, segments: Sequence[int] | None = None) -> Tensor:
    """Mean entropy (nats) over rows / segments of a distribution tensor (GAEA Fig. 1 metric)."""
    def h(q: Tensor) -> Tensor:
        q = q.clamp_min(0)
        return -(torch.where(q > 0, q * q.log(), torch.zeros_like(q))).sum(-1)

    if segments is None:
        return h(p).mean()
    return torch.stack([h(part) for part in torch.split(p, list(segments), dim=-1)]).mean()
