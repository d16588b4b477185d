"""The DARTS CNN search space: supernet (DARTS and PC-DARTS variants) and genotype derivation.

The supernet consumes *effective* architecture weights handed in by the caller
(``forward(x, arch)``), instead of owning α/β parameters as the reference code
does.  That keeps the relaxation (softmax of logits, GAEA's simplex point, ...)
and its optimiser out of the network, so every method reuses one supernet.
The forward has no Python branching on tensor values (CUDA-graph capturable).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from nas_cli.errors import ConfigError
from nas_cli.spaces.base import SPACES, ArchTensorSpec, HardEdges, RelaxationSpec, SearchSpace
from nas_cli.spaces.darts_fused import FusedSearchCell
from nas_cli.spaces.darts_ops import OPS, PRIMITIVES, FactorizedReduce, ReLUConvBN, channel_shuffle
from nas_cli.spaces.genotypes import Genotype

Pairs = list[tuple[str, int]]


def edge_offset(node: int) -> int:
    """Row of the first incoming edge of intermediate node ``node``: i(i+3)/2 (node i has 2+i inputs)."""
    return node * (node + 3) // 2


def _sum(tensors: Sequence[Tensor]) -> Tensor:
    """Sum without the leading ``0 +`` of builtin ``sum`` (one kernel fewer per node/edge)."""
    out = tensors[0]
    for t in tensors[1:]:
        out = out + t
    return out


#: a discrete edge's (selected op, its sample entry w[k], Σ_o w[o] - w[k]); see :class:`HardEdges`
Choice = tuple[int, Tensor, Tensor]


def _mix(ops: Sequence[nn.Module], x: Tensor, weights: Tensor, chosen: Choice | None) -> Tensor:
    """Σ_o w[o]·op_o(x); with ``chosen`` (GDAS / RS-WS one-hot samples) only that op runs.

    The discrete form ``w[k]·op_k(x) + (Σ_o w[o] - w[k])`` has the one-hot value op_k(x) and
    passes the straight-through gradient to every entry of ``w`` (GDAS's estimator)."""
    if chosen is None:
        return _sum([w * op(x) for w, op in zip(weights.unbind(0), ops)])
    k, h, rest = chosen
    return torch.addcmul(rest, ops[k](x), h)


def num_edges(nodes: int) -> int:
    """Edges of a cell with ``nodes`` intermediate nodes (14 for 4 nodes)."""
    return edge_offset(nodes)


# --------------------------------------------------------------- mixed ops
class MixedOp(nn.Module):
    """DARTS edge: Σ_o w[o]·op_o(x) over every candidate op (zero-weight ops are still computed)."""

    def __init__(self, C: int, stride: int, op_names: Sequence[str]):
        super().__init__()
        self.ops = nn.ModuleList(OPS[name](C, stride, False, True) for name in op_names)

    def forward(self, x: Tensor, weights: Tensor, chosen: Choice | None = None) -> Tensor:
        return _mix(self.ops, x, weights, chosen)


class PartialMixedOp(nn.Module):
    """PC-DARTS edge (``darts_space.md`` §3.1): mix ops on the first C/K channels only.

    The remaining channels bypass the ops (max-pooled 2x2 on stride-2 edges so
    shapes agree), then a channel shuffle with K groups interleaves the two
    parts.  This cuts supernet memory/params by ~K at the cost of a noisier
    op signal, which PC-DARTS compensates with edge normalisation.
    """

    def __init__(self, C: int, stride: int, op_names: Sequence[str], k: int):
        super().__init__()
        if C % k != 0:
            raise ConfigError(f"partial_channels K={k} must divide the cell width {C}")
        self.k = k
        self.c_part = C // k
        self.ops = nn.ModuleList(OPS[name](self.c_part, stride, False, True) for name in op_names)
        self.bypass: nn.Module = nn.MaxPool2d(2, 2) if stride == 2 else nn.Identity()

    def forward(self, x: Tensor, weights: Tensor, chosen: Choice | None = None) -> Tensor:
        x1, x2 = x[:, : self.c_part], x[:, self.c_part :]
        y1 = _mix(self.ops, x1, weights, chosen)
        return channel_shuffle(torch.cat([y1, self.bypass(x2)], dim=1), self.k)


# -------------------------------------------------------------------- cell
class SearchCell(nn.Module):
    """Supernet cell: preprocess both inputs to C channels, ``nodes`` mixed nodes, concat them."""

    def __init__(
        self,
        nodes: int,
        C_pp: int,
        C_p: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
        op_names: Sequence[str],
        k: int = 1,
    ):
        super().__init__()
        self.nodes = nodes
        self.reduction = reduction
        self.preprocess0: nn.Module = (
            FactorizedReduce(C_pp, C, affine=False) if reduction_prev else ReLUConvBN(C_pp, C, 1, 1, 0, affine=False)
        )
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0, affine=False)
        edges: list[nn.Module] = []
        for i in range(nodes):
            for j in range(2 + i):
                stride = 2 if reduction and j < 2 else 1
                edges.append(PartialMixedOp(C, stride, op_names, k) if k > 1 else MixedOp(C, stride, op_names))
        self.edges = nn.ModuleList(edges)

    def forward(self, s0: Tensor, s1: Tensor, op_weights: Tensor, edge_weights: Tensor | None,
                chosen: HardEdges | None = None) -> Tensor:
        """``op_weights`` (E, |O|); ``edge_weights`` (E,) or None for unit edge weights;
        ``chosen``: the prepared one-hot sample of ``op_weights`` (only its ops run) or None (full mixture)."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(self.nodes):
            off = edge_offset(i)
            outs = [self.edges[off + j](h, op_weights[off + j], None if chosen is None else chosen.edge(off + j))
                    for j, h in enumerate(states)]
            if edge_weights is not None:
                outs = [edge_weights[off + j] * o for j, o in enumerate(outs)]
            states.append(_sum(outs))
        return torch.cat(states[2:], dim=1)


# ---------------------------------------------------------------- supernet
class DartsSupernet(nn.Module):
    """Weight-sharing DARTS/PC-DARTS network; ``forward(x, arch) -> logits``.

    ``arch["normal"]``/``arch["reduce"]``: (E, |O|) effective op weights.
    ``arch["normal_edges"]``/``arch["reduce_edges"]``: (E,) effective edge
    weights, used when present (PC-DARTS edge normalisation), else weight 1.
    ``fused=True`` replaces every cell by a :class:`FusedSearchCell` built from
    it (same init, same state_dict, same math; far fewer kernels).
    ``discrete=True`` (GDAS, RS-WS): the op weights are one-hot samples and each edge runs only
    its sampled op (one device->host copy of the argmax per forward); fusion does not apply.
    """

    def __init__(
        self,
        C: int,
        num_classes: int,
        layers: int,
        op_names: Sequence[str],
        nodes: int = 4,
        stem_multiplier: int = 3,
        in_channels: int = 3,
        partial_channels: int = 1,
        stem: str = "cifar",
        fused: bool = False,
        discrete: bool = False,
    ):
        super().__init__()
        self.discrete = discrete
        fused = fused and not discrete  # a fused node runs every op of every edge
        self.fused = fused
        self.op_names = list(op_names)
        self.nodes = nodes
        c_stem = stem_multiplier * C
        if stem == "cifar":
            self.stem: nn.Module = nn.Sequential(
                nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem)
            )
            self.stem1: nn.Module | None = None
            reduction_prev = False
        elif stem == "imagenet":  # §3.2: two stride-2 stems, 224 -> 56 (s0) -> 28 (s1)
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, c_stem // 2, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c_stem // 2),
                nn.ReLU(inplace=False),
                nn.Conv2d(c_stem // 2, c_stem, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c_stem),
            )
            self.stem1 = nn.Sequential(
                nn.ReLU(inplace=False),
                nn.Conv2d(c_stem, c_stem, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c_stem),
            )
            reduction_prev = True
        else:
            raise ConfigError(f"unknown darts stem '{stem}'; choose one of: cifar, imagenet")
        C_pp, C_p, C_cur = c_stem, c_stem, C
        cells = []
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_cur *= 2
            cell = SearchCell(nodes, C_pp, C_p, C_cur, reduction, reduction_prev, op_names, partial_channels)
            cells.append(FusedSearchCell(cell) if fused else cell)
            reduction_prev = reduction
            C_pp, C_p = C_p, nodes * C_cur
        self.cells = nn.ModuleList(cells)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)

    def forward(self, x: Tensor, arch: Mapping[str, Tensor]) -> Tensor:
        s0 = self.stem(x)
        s1 = s0 if self.stem1 is None else self.stem1(s0)
        chosen = (dict(zip(("normal", "reduce"), HardEdges.of(arch["normal"], arch["reduce"])))
                  if self.discrete else None)
        for cell in self.cells:
            kind = "reduce" if cell.reduction else "normal"
            if chosen is None:
                s0, s1 = s1, cell(s0, s1, arch[kind], arch.get(f"{kind}_edges"))
            else:
                s0, s1 = s1, cell(s0, s1, arch[kind], arch.get(f"{kind}_edges"), chosen[kind])
        out = self.global_pooling(s1)
        return self.classifier(out.flatten(1))


# ------------------------------------------------------------- derivation
def derive_cell(weights: Any, op_names: Sequence[str], nodes: int = 4) -> Pairs:
    """Discrete cell from an (E, |O|) matrix of effective weights (``darts_space.md`` §7).

    Per node: rank incoming edges by their strongest non-``none`` op (stable:
    ties keep the lower input index first), keep the top two, strongest first,
    each with its argmax non-``none`` op (first maximum wins).  ``none`` is
    ignored because it would otherwise win on nearly every edge of a converged
    DARTS supernet and yield an empty cell.
    """
    rows = [[float(v) for v in row] for row in weights]
    if len(rows) != num_edges(nodes) or any(len(r) != len(op_names) for r in rows):
        raise ValueError(f"expected a ({num_edges(nodes)}, {len(op_names)}) weight matrix")
    cols = [o for o, name in enumerate(op_names) if name != "none"]
    pairs: Pairs = []
    for i in range(nodes):
        off = edge_offset(i)
        strength = [max(rows[off + j][o] for o in cols) for j in range(2 + i)]
        kept = sorted(range(2 + i), key=lambda j: -strength[j])[:2]
        for j in kept:
            row = rows[off + j]
            best = cols[0]
            for o in cols[1:]:
                if row[o] > row[best]:
                    best = o
            pairs.append((op_names[best], j))
    return pairs


# ------------------------------------------------------------------ space
class DartsSpace(SearchSpace):
    """Config keys: init_channels (16), layers (8), nodes (4), stem_multiplier (3), exclude_zero (False),
    stem ("cifar" | "imagenet"; the ImageNet search supernet of ``darts_space.md`` §3.2)."""

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        super().__init__(cfg)
        self.init_channels = int(cfg.get("init_channels", 16))
        self.layers = int(cfg.get("layers", 8))
        self.nodes = int(cfg.get("nodes", 4))
        self.stem_multiplier = int(cfg.get("stem_multiplier", 3))
        self.exclude_zero = bool(cfg.get("exclude_zero", False))
        self.stem = str(cfg.get("stem", "cifar"))
        if self.init_channels < 1 or self.layers < 1 or self.nodes < 1 or self.stem_multiplier < 1:
            raise ConfigError("darts space: init_channels, layers, nodes and stem_multiplier must be positive")
        if self.stem not in ("cifar", "imagenet"):
            raise ConfigError(f"unknown darts stem '{self.stem}'; choose one of: cifar, imagenet")
        # a fresh list per instance: never mutate a shared constant (discrepancies.md D)
        self.op_names = [p for p in PRIMITIVES if not (self.exclude_zero and p == "none")]

    @property
    def concat(self) -> tuple[int, ...]:
        return tuple(range(2, self.nodes + 2))

    def arch_specs(self, relax: RelaxationSpec) -> list[ArchTensorSpec]:
        e, segs = num_edges(self.nodes), tuple(2 + i for i in range(self.nodes))
        specs = [
            ArchTensorSpec("normal", (e, len(self.op_names)), "ops"),
            ArchTensorSpec("reduce", (e, len(self.op_names)), "ops"),
        ]
        if relax.learn_edges:
            specs += [
                ArchTensorSpec("normal_edges", (e,), "edges", segments=segs),
                ArchTensorSpec("reduce_edges", (e,), "edges", segments=segs),
            ]
        return specs

    def build_supernet(
        self, num_classes: int, in_channels: int, relax: RelaxationSpec, *, fused: bool = False,
        hard_forward: str = "selected",
    ) -> DartsSupernet:
        """One-hot samples run only their selected ops here (``hard_forward="selected"``)."""
        from nas_cli.arch.sampling import SAMPLINGS

        if hard_forward != "selected":
            raise ConfigError("the darts space runs only the sampled op of each edge; "
                              "use runtime.hard_forward=auto or selected")

        if relax.sampling not in SAMPLINGS.names():
            raise ConfigError(f"unknown sampling '{relax.sampling}'; choose one of: {', '.join(SAMPLINGS.names())}")
        discrete = SAMPLINGS.get(relax.sampling).one_hot
        k = int(relax.partial_channels)
        if k < 1:
            raise ConfigError(f"partial_channels must be >= 1, got {k}")
        if k > 1 and self.init_channels % (2 * k) != 0:
            # C/K must be even: the stride-2 skip op is a FactorizedReduce on C/K channels
            raise ConfigError(f"partial_channels K={k} needs init_channels divisible by {2 * k}")
        return DartsSupernet(
            C=self.init_channels,
            num_classes=num_classes,
            layers=self.layers,
            op_names=self.op_names,
            nodes=self.nodes,
            stem_multiplier=self.stem_multiplier,
            in_channels=in_channels,
            partial_channels=k,
            stem=self.stem,
            fused=fused,
            discrete=discrete,
        )

    def effective_weights(self, arch: Mapping[str, Tensor], kind: str) -> Tensor:
        """Op weights of one cell type times its edge weights (when present): the W of §7."""
        w = arch[kind].detach().to("cpu", torch.float64)
        edges = arch.get(f"{kind}_edges")
        if edges is not None:
            w = w * edges.detach().to("cpu", torch.float64).unsqueeze(1)
        return w

    def discretize(self, arch: Mapping[str, Tensor]) -> Genotype:
        return Genotype(
            normal=tuple(derive_cell(self.effective_weights(arch, "normal").tolist(), self.op_names, self.nodes)),
            normal_concat=self.concat,
            reduce=tuple(derive_cell(self.effective_weights(arch, "reduce").tolist(), self.op_names, self.nodes)),
            reduce_concat=self.concat,
        )

    def genotype_to_json(self, genotype: Genotype) -> dict[str, Any]:
        return genotype.to_json()

    def genotype_from_json(self, data: Mapping[str, Any]) -> Genotype:
        return Genotype.from_json(data, nodes=self.nodes)

    def genotype_str(self, genotype: Genotype) -> str:
        """E.g. ``N: sep_conv_3x3@1 sep_conv_3x3@0 | ... ; R: ...`` (concat shown only if non-default)."""
        normal = self._cell_str(genotype.normal, genotype.normal_concat)
        return f"N: {normal} ; R: {self._cell_str(genotype.reduce, genotype.reduce_concat)}"

    def _cell_str(self, pairs: Sequence[tuple[str, int]], concat: Sequence[int]) -> str:
        nodes = [f"{a}@{ja} {b}@{jb}" for (a, ja), (b, jb) in zip(pairs[0::2], pairs[1::2])]
        text = " | ".join(nodes)
        return text if tuple(concat) == self.concat else f"{text} concat={list(concat)}"


SPACES.add("darts", DartsSpace)
