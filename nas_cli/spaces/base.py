"""The search-space seam.

A search space knows three things: which architecture tensors it needs (their
shapes and how they are normalised), how to build a weight-sharing supernet that
consumes *effective* architecture weights, and how to turn effective weights into
a discrete genotype.  It knows nothing about how the weights were produced
(softmax of logits, a point on the simplex, a Gumbel sample) -- that is the
relaxation's job (``nas_cli.arch``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from nas_cli.registry import Registry


@dataclass(frozen=True)
class ArchTensorSpec:
    """One architecture tensor.

    kind="ops":   shape (edges, num_ops); every row is one distribution over ops.
    kind="edges": shape (edges,); ``segments`` gives the lengths of consecutive
                  groups that each form one distribution (the incoming edges of
                  a node, e.g. (2, 3, 4, 5) in the DARTS cell).
    """

    name: str
    shape: tuple[int, ...]
    kind: str
    segments: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("ops", "edges"):
            raise ValueError(f"bad kind {self.kind}")
        if self.kind == "edges":
            assert self.segments is not None and sum(self.segments) == self.shape[0]


@dataclass(frozen=True)
class RelaxationSpec:
    """Space-relevant part of a method's relaxation (what the supernet must build)."""

    partial_channels: int = 1  # PC-DARTS K (1 = all channels)
    learn_edges: bool = False  # PC-DARTS edge normalisation (edge weight tensors exist)
    sampling: str = "mixture"  # "mixture" (weighted sum of all ops) | "hard" (one-hot sample; GDAS)


class SearchSpace(ABC):
    """Base class; subclasses are registered in ``SPACES`` under their config name."""

    #: op names in canonical column order (after exclude_zero)
    op_names: list[str]

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        self.cfg = cfg

    @abstractmethod
    def arch_specs(self, relax: RelaxationSpec) -> list[ArchTensorSpec]:
        """Architecture tensors the supernet consumes, in a fixed order."""

    #: whether one-hot samples can run masked (every op, exact zeros for the unselected ones; no
    #: host sync): ``build_supernet(hard_forward="masked")``, see nas_cli/arch/hard_forward.py
    supports_masked_hard: bool = False

    @abstractmethod
    def build_supernet(
        self, num_classes: int, in_channels: int, relax: RelaxationSpec, *, fused: bool = False,
        hard_forward: str = "selected",
    ) -> nn.Module:
        """Module with ``forward(x, arch: dict[str, Tensor]) -> logits``.

        ``fused`` (``runtime.fused``) asks for a faster implementation with the
        same math and the same state_dict; spaces without one ignore it.
        ``hard_forward`` (``runtime.hard_forward``, resolved): how one-hot samples run;
        ``"masked"`` only where :attr:`supports_masked_hard`.

        ``arch`` maps every spec name to its *effective* weights (rows summing to 1
        for mixtures, one-hot for hard samples, per-node normalised edge weights).
        The forward must not branch in Python on tensor values (CUDA-graph safe).
        """

    @abstractmethod
    def discretize(self, arch: Mapping[str, torch.Tensor]) -> Any:
        """Genotype from effective weights (detached, fp32)."""

    @abstractmethod
    def genotype_to_json(self, genotype: Any) -> dict[str, Any]:
        """JSON-serialisable form of a genotype."""

    @abstractmethod
    def genotype_from_json(self, data: Mapping[str, Any]) -> Any:
        """Inverse of :meth:`genotype_to_json`."""

    def genotype_str(self, genotype: Any) -> str:
        """Short single-line text form for logs and tables."""
        return str(genotype)

    def plot_groups(self) -> dict[str, str]:
        """Which op tensor is the 'normal cell' for the Figure-1 entropy metric."""
        specs = [s.name for s in self.arch_specs(RelaxationSpec()) if s.kind == "ops"]
        return {"primary": specs[0]}


SPACES: Registry[type[SearchSpace]] = Registry("search space")


def count_parameters(module: nn.Module, exclude: str = "auxiliary") -> int:
    """Trainable parameters excluding modules whose name contains ``exclude`` (papers' convention)."""
    return sum(p.numel() for n, p in module.named_parameters() if p.requires_grad and exclude not in n)


@dataclass(frozen=True)
class HardEdges:
    """A one-hot (straight-through) sample of an (E, |O|) weight tensor, prepared once per forward.

    ``chosen[e]``: the op that runs on edge e (found with ONE device->host copy for all edges);
    ``h[e]``: the sample's entry of that op; ``rest[e]``: the sum of its other entries.  The edge
    output ``h_e·op_e(x) + rest_e`` (``methods.md`` §5: only the selected op runs; the others enter
    as their zero-valued entries, so the straight-through gradient reaches every entry) then costs
    one ``addcmul`` per edge instead of a handful of small ops -- discrete forwards run eagerly,
    where every op is host dispatch time.
    """

    chosen: tuple[int, ...]
    h: tuple[torch.Tensor, ...]
    rest: tuple[torch.Tensor, ...]
    #: ``rest`` as one (E,) tensor (for sums over groups of edges)
    rest_vec: torch.Tensor

    @staticmethod
    def of(*weights: torch.Tensor) -> "tuple[HardEdges, ...]":
        """One :class:`HardEdges` per (E_i, |O|) tensor; one host copy for all of them."""
        ks = [w.detach().argmax(-1) for w in weights]
        flat = torch.cat(ks).tolist()
        out, start = [], 0
        for w, k in zip(weights, ks):
            h = w.gather(1, k[:, None]).squeeze(1)
            chosen = tuple(int(v) for v in flat[start:start + k.numel()])
            start += k.numel()
            rest = w.sum(1) - h
            out.append(HardEdges(chosen, h.unbind(0), rest.unbind(0), rest))
        return tuple(out)

    def edge(self, e: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        return self.chosen[e], self.h[e], self.rest[e]
