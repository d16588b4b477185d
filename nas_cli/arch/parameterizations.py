"""Architecture parameterisations (the 'relaxation' half that stores parameters).

* ``logits``  -- unconstrained tensors, effective weights = softmax per edge (DARTS,
  PC-DARTS; PC-DARTS edge weights = softmax over a node's incoming edges).
* ``simplex`` -- tensors that *are* points of a product of simplices (GAEA); used
  directly, so ``backward()`` gives dL/dtheta, the gradient exponentiated gradient needs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from nas_cli.arch.segments import segment_apply, uniform_like_segments
from nas_cli.registry import Registry
from nas_cli.spaces.base import ArchTensorSpec


class Parameterization(ABC):
    name: str

    @abstractmethod
    def init(self, spec: ArchTensorSpec, init_std: float, generator: torch.Generator) -> Tensor:
        """Initial raw tensor (fp32, CPU)."""

    @abstractmethod
    def weights(self, raw: Tensor, spec: ArchTensorSpec) -> Tensor:
        """Effective (normalised) weights, differentiable w.r.t. ``raw``."""

    @abstractmethod
    def log_weights(self, raw: Tensor, spec: ArchTensorSpec) -> Tensor:
        """log of the effective weights (Gumbel sampling needs it)."""


PARAMETERIZATIONS: Registry[Parameterization] = Registry("architecture parameterization")


class Logits(Parameterization):
    name = "logits"

    def init(self, spec: ArchTensorSpec, init_std: float, generator: torch.Generator) -> Tensor:
        return init_std * torch.randn(spec.shape, generator=generator)

    def weights(self, raw: Tensor, spec: ArchTensorSpec) -> Tensor:
        return segment_apply(raw, spec.segments, lambda t: torch.softmax(t, dim=-1))

    def log_weights(self, raw: Tensor, spec: ArchTensorSpec) -> Tensor:
        return segment_apply(raw, spec.segments, lambda t: torch.log_softmax(t, dim=-1))


class Simplex(Parameterization):
    name = "simplex"

    def init(self, spec: ArchTensorSpec, init_std: float, generator: torch.Generator) -> Tensor:
        if spec.kind == "ops":
            return uniform_like_segments(spec.shape[-1], None, rows=spec.shape[0])
        return uniform_like_segments(spec.shape[0], spec.segments)

    def weights(self, raw: Tensor, spec: ArchTensorSpec) -> Tensor:
        return raw

    def log_weights(self, raw: Tensor, spec: ArchTensorSpec) -> Tensor:
        return raw.clamp_min(1e-30).log()


PARAMETERIZATIONS.add("logits", Logits())
PARAMETERIZATIONS.add("simplex", Simplex())
