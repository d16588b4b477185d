"""The architecture parameters of one search run.

Holds one raw fp32 tensor per :class:`ArchTensorSpec` of the search space and
turns them into the effective weights the supernet consumes.  Architecture
parameters are deliberately *not* part of the supernet module, so weight
optimizers, parameter counts and DDP wrapping never see them (as in every
reference implementation).
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import torch
from torch import Tensor, nn

from nas_cli.arch.parameterizations import PARAMETERIZATIONS
from nas_cli.arch.sampling import SAMPLINGS
from nas_cli.arch.segments import entropy
from nas_cli.spaces.base import ArchTensorSpec


class ArchParameters(nn.Module):
    def __init__(
        self,
        specs: list[ArchTensorSpec],
        parameterization: str,
        sampling: str = "mixture",
        init_std: float = 1e-3,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.specs = {s.name: s for s in specs}
        self.param = PARAMETERIZATIONS.get(parameterization)
        self.sampling = SAMPLINGS.get(sampling)
        gen = torch.Generator().manual_seed(seed)
        self.raw = nn.ParameterDict(
            {s.name: nn.Parameter(self.param.init(s, init_std, gen).float()) for s in specs}
        )
        # Gumbel temperature (hard sampling), set by the search loop each epoch; the samplers read
        # the device copy, which a CUDA-graph-replayed step sees change (a float would be baked in)
        self.register_buffer("tau_tensor", torch.ones(()), persistent=False)
        self._tau = 1.0
        self._gen: torch.Generator | None = None

    @property
    def tau(self) -> float:
        return self._tau

    @tau.setter
    def tau(self, value: float) -> None:
        self._tau = float(value)
        self.tau_tensor.fill_(self._tau)  # in place: a captured step keeps reading this tensor

    @property
    def parameterization(self) -> str:
        return self.param.name

    def tensors(self) -> Iterator[tuple[ArchTensorSpec, nn.Parameter]]:
        for name, spec in self.specs.items():
            yield spec, self.raw[name]

    def weights(self, sample: bool = True) -> dict[str, Tensor]:
        """Effective weights for a forward pass (differentiable).

        Op tensors go through the configured sampling (mixture = unchanged,
        hard = straight-through Gumbel one-hot); edge tensors are always mixtures.
        """
        out: dict[str, Tensor] = {}
        for spec, raw in self.tensors():
            w = self.param.weights(raw, spec)
            if sample and spec.kind == "ops" and self.sampling.name != "mixture":
                w = self.sampling(w, self.param.log_weights(raw, spec), self.tau_tensor, None)
            out[spec.name] = w
        return out

    @torch.no_grad()
    def probabilities(self) -> dict[str, Tensor]:
        """Detached fp32 effective weights (no sampling): genotype, entropy, history."""
        return {spec.name: self.param.weights(raw, spec).detach().float().clone() for spec, raw in self.tensors()}

    @torch.no_grad()
    def entropies(self) -> dict[str, float]:
        """Mean entropy per tensor (ops: over edges; edges: over nodes), natural log."""
        probs = self.probabilities()
        return {n: float(entropy(p, self.specs[n].segments if self.specs[n].kind == "edges" else None))
                for n, p in probs.items()}

    def entropy_regularizer(self) -> Tensor:
        """KL-to-uniform term sum theta*log(theta*|O|) over op tensors ([G]'s 'arch_weight_decay')."""
        total = torch.zeros((), device=next(iter(self.raw.values())).device)
        for spec, raw in self.tensors():
            if spec.kind == "ops":
                p = self.param.weights(raw, spec)
                total = total + (p * (p.clamp_min(1e-30) * p.shape[-1]).log()).sum()
        return total

    def param_groups(self, lr: float, edge_lr: float | None) -> list[dict[str, Any]]:
        """One group per tensor so optimizers know its geometry (rows or node segments)."""
        groups = []
        for spec, raw in self.tensors():
            groups.append({
                "params": [raw],
                "lr": lr if spec.kind == "ops" or edge_lr is None else edge_lr,
                "segments": spec.segments if spec.kind == "edges" else None,
                "kind": spec.kind,
                "name": spec.name,
            })
        return groups

    def numpy_state(self) -> dict[str, Any]:
        return {n: p.detach().cpu().numpy().copy() for n, p in self.raw.items()}

    def load_raw(self, values: Mapping[str, Tensor]) -> None:
        with torch.no_grad():
            for n, v in values.items():
                self.raw[n].copy_(v)
