"""NAS-Bench-201 (``spec/nasbench201.md``): cell space, search supernet, benchmark network, arch strings.

One 4-node / 6-edge cell over 5 ops, shared by all 15 cells of a fixed macro
network (stem, 3 stages of N cells, residual reduction blocks).  The search
supernet consumes one architecture tensor ``"cell"`` of shape (6, |O|).

Two forwards, chosen once when the supernet is built (never per tensor value):

* mixture (DARTS, GAEA DARTS): every edge is Σ_o w[e, o]·op_o(x);
* discrete (GDAS, GAEA GDAS, RS-WS): the weights are one-hot samples; only the
  selected op of each edge runs.  Non-selected terms enter as their (zero-valued)
  weights, so the straight-through gradient reaches every entry of the sample
  (``methods.md`` §5).  Finding the selected ops needs them on the host: one
  ``argmax`` over all edges and one device->host copy per forward, not per op.

The benchmark network (:class:`NB201Network`) is the from-scratch network of
an arch string (affine BN), whose parameter count matches the benchmark's.
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn

from nas_cli.config import SearchSpaceConfig, register_schema
from nas_cli.errors import ConfigError
from nas_cli.spaces.base import SPACES, ArchTensorSpec, HardEdges, RelaxationSpec, SearchSpace
from nas_cli.spaces.darts_fused import _BN, HeldBackStats

#: canonical column order of the architecture tensor (spec §1); never mix with NASLib's order
NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: cell nodes incl. the input node 0; node 3 is the output
NB201_NODES = 4
#: (target, source) per edge, in the order of the sorted edge keys "1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2"
NB201_EDGES: tuple[tuple[int, int], ...] = tuple((i, j) for i in range(1, NB201_NODES) for j in range(i))
NUM_ARCHS = len(NB201_OPS) ** len(NB201_EDGES)  # 15,625


# ----------------------------------------------------------------- arch strings
def arch_to_str(ops: Sequence[str]) -> str:
    """Six op names (edge order of :data:`NB201_EDGES`) -> ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``."""
    if len(ops) != len(NB201_EDGES):
        raise ValueError(f"an NB201 architecture has {len(NB201_EDGES)} edges, got {len(ops)} ops")
    nodes = []
    for i in range(1, NB201_NODES):
        nodes.append("|" + "|".join(f"{ops[e]}~{j}" for e, (t, j) in enumerate(NB201_EDGES) if t == i) + "|")
    return "+".join(nodes)


def str_to_arch(text: str) -> tuple[str, ...]:
    """Parse an arch string back to six op names; a malformed string is a one-line ConfigError."""
    s = str(text).strip()
    nodes = s.split("+")
    if len(nodes) != NB201_NODES - 1:
        raise ConfigError(f"not an NB201 arch string (expected {NB201_NODES - 1} '+'-separated nodes): '{text}'")
    ops: list[str] = []
    for i, node in enumerate(nodes, start=1):
        tokens = [t for t in node.split("|") if t]
        if len(tokens) != i:
            raise ConfigError(f"node {i} of NB201 arch string must list {i} inputs, got {len(tokens)}: '{text}'")
        for j, tok in enumerate(tokens):
            op, sep, src = tok.partition("~")
            if not sep or src != str(j):
                raise ConfigError(f"bad token '{tok}' in NB201 arch string (expected '<op>~{j}'): '{text}'")
            if op not in NB201_OPS:
                raise ConfigError(f"unknown NB201 op '{op}' in '{text}'; ops: {', '.join(NB201_OPS)}")
            ops.append(op)
    return tuple(ops)


def all_arch_strings(op_names: Sequence[str] = NB201_OPS) -> Iterator[str]:
    """Every architecture of the space (15,625 with all ops), in lexicographic op-index order."""
    for combo in itertools.product(op_names, repeat=len(NB201_EDGES)):
        yield arch_to_str(combo)


# ------------------------------------------------------------------------ ops
class ReLUConvBN(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 affine: bool = True, track_running_stats: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine, track_running_stats=track_running_stats),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class Zero(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.mul(0.0)


def make_op(name: str, C: int, affine: bool, track: bool) -> nn.Module:
    """An in-cell op (stride 1, C_in = C_out, so no FactorizedReduce / pre-projection is ever needed)."""
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(C, C, 1, 1, 0, affine, track)
    if name == "nor_conv_3x3":
        return ReLUConvBN(C, C, 3, 1, 1, affine, track)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ConfigError(f"unknown NB201 op '{name}'")


class ResBlock(nn.Module):
    """Reduction block between stages: two ReLUConvBN 3x3 + (AvgPool 2x2 -> Conv1x1) shortcut."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


# ---------------------------------------------------------------------- cells
class HardSelection:
    """The one-hot sample of a discrete forward, prepared once for all cells (:class:`HardEdges`).

    Node i is ``rest[i-1] + Σ_e h[e]·op_e(x_j)``: the spec's edge output ``h_k*·op_k*(x) + Σ_{k≠k*} h_k``
    summed over the node's edges, with the non-selected entries of the node's edges pre-summed.
    """

    def __init__(self, edges: HardEdges, rest: tuple[Tensor, ...]) -> None:
        self.chosen, self.h, self.rest = edges.chosen, edges.h, rest

    @staticmethod
    def of(weights: Tensor) -> "HardSelection":
        (edges,) = HardEdges.of(weights)
        return HardSelection(edges, HardSelection.node_sums(edges.rest_vec))

    @staticmethod
    def node_sums(per_edge: Tensor) -> tuple[Tensor, ...]:
        """Per node 1..3, the sum of a (6,) per-edge vector over the node's incoming edges."""
        # NB201_EDGES is sorted by target node: node i's i incoming edges are consecutive
        return tuple(part.sum() for part in per_edge.split(list(range(1, NB201_NODES))))


class NB201SearchCell(nn.Module):
    """Supernet cell: every candidate op on every edge (op BN affine=False)."""

    def __init__(self, C: int, op_names: Sequence[str], track_running_stats: bool, discrete: bool) -> None:
        super().__init__()
        self.discrete = discrete
        self.edges = nn.ModuleList(
            nn.ModuleList(make_op(o, C, False, track_running_stats) for o in op_names) for _ in NB201_EDGES)

    def forward(self, x: Tensor, weights: Tensor, chosen: HardSelection | None) -> Tensor:
        if chosen is not None:
            return self._forward_hard(x, chosen)
        nodes = [x]
        for i in range(1, NB201_NODES):
            terms: list[Tensor] = []
            for e, (t, j) in enumerate(NB201_EDGES):
                if t == i:
                    w = weights[e]
                    terms.extend(w[o] * op(nodes[j]) for o, op in enumerate(self.edges[e]))
            out = terms[0]
            for term in terms[1:]:
                out = out + term
            nodes.append(out)
        return nodes[-1]

    def _forward_hard(self, x: Tensor, sel: HardSelection) -> Tensor:
        """Only the selected op of each edge runs; value 1·op_k*(x) + 0, gradient to every sample entry."""
        nodes = [x]
        for i in range(1, NB201_NODES):
            out = sel.rest[i - 1]
            for e, (t, j) in enumerate(NB201_EDGES):
                if t == i:
                    out = torch.addcmul(out, self.edges[e][sel.chosen[e]](nodes[j]), sel.h[e])
            nodes.append(out)
        return nodes[-1]


class NB201InferCell(nn.Module):
    """Benchmark cell of one architecture (affine BN, one op per edge)."""

    def __init__(self, C: int, ops: Sequence[str]) -> None:
        super().__init__()
        self.ops = nn.ModuleList(make_op(o, C, True, True) for o in ops)

    def forward(self, x: Tensor) -> Tensor:
        nodes = [x]
        for i in range(1, NB201_NODES):
            terms = [self.ops[e](nodes[j]) for e, (t, j) in enumerate(NB201_EDGES) if t == i]
            out = terms[0]
            for term in terms[1:]:
                out = out + term
            nodes.append(out)
        return nodes[-1]


class _Macro(nn.Module):
    """Shared skeleton: stem -> [N cells, ResBlock] x2 -> N cells -> BN, ReLU, GAP, Linear."""

    def __init__(self, C: int, N: int, num_classes: int, in_channels: int, make_cell: Any) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        layers: list[nn.Module] = []
        c = C
        for stage in range(3):
            if stage > 0:
                layers.append(ResBlock(c, 2 * c))
                c *= 2
            layers.extend(make_cell(c) for _ in range(N))
        self.cells = nn.ModuleList(layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=False))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def head(self, x: Tensor) -> Tensor:
        return self.classifier(self.global_pooling(self.lastact(x)).flatten(1))


class NB201Supernet(_Macro):
    """``forward(x, {"cell": (6, |O|)}) -> logits``; ``discrete`` runs only the one-hot-selected ops.

    ``fused=True`` (mixture forward) replaces every search cell by a
    :class:`~nas_cli.spaces.nb201_fused.FusedNB201Cell` built from it: same init, same
    state_dict, same math, far fewer kernels; ``merge_1x1`` is its conv-merging switch.

    ``hard_forward`` (discrete supernets): ``"selected"`` runs only the sampled op of each edge
    (reference cells; the choice goes to the host every forward); ``"masked"`` runs one-hot
    samples through the fused cells with exact zeros for the other ops (``nb201_fused.py``; needs
    ``fused``): no host sync, so the step can be replayed from a CUDA graph.  After each training
    forward ``last_used`` holds the sample's one-hot pattern, for
    :class:`~nas_cli.arch.hard_forward.FreezeUnselected`.
    """

    def __init__(self, C: int, N: int, num_classes: int, in_channels: int, op_names: Sequence[str],
                 track_running_stats: bool, discrete: bool, fused: bool = False, merge_1x1: bool = True,
                 hard_forward: str = "selected") -> None:
        super().__init__(C, N, num_classes, in_channels,
                         lambda c: NB201SearchCell(c, op_names, track_running_stats, discrete))
        if hard_forward not in ("selected", "masked"):
            raise ValueError(f"hard_forward must be 'selected' or 'masked', not {hard_forward!r}")
        self.op_names = list(op_names)
        self.discrete = discrete
        #: one-hot samples run through the fused cells (all ops, unselected ones times exact zeros)
        self.masked = discrete and hard_forward == "masked"
        if self.masked and not fused:
            raise ConfigError("runtime.hard_forward=masked runs the fused NB201 cells; set runtime.fused=true")
        self.fused = fused and (not discrete or self.masked)
        #: one-hot pattern of the last training forward's sample (masked forward only)
        self.last_used: Tensor | None = None
        self._bns: list | None = None  # _held_bns
        #: nb201_fused.OwnerMasks: every BN-update mask of a masked training forward from one gather
        self._owner_masks: Any = None
        #: position of the first fused cell (its mixing matrices serve every cell: same op list)
        self._mixer: int | None = None
        #: masked training forwards run the selected-conv form where the cells allow (nb201_fused.SELECT_CONVS,
        #: read here, with the cells built)
        self._select_convs = False
        if self.fused:
            from nas_cli.spaces import nb201_fused  # lazy: it imports this module

            for i, layer in enumerate(self.cells):
                if isinstance(layer, NB201SearchCell):
                    self.cells[i] = nb201_fused.FusedNB201Cell(layer, merge_1x1=merge_1x1)
                    self._mixer = i if self._mixer is None else self._mixer
            if self.masked and nb201_fused.OWNER_MASKS_AT_ONCE:
                self._owner_masks = nb201_fused.OwnerMasks([c for c in self.cells if hasattr(c, "mix")])
            self._select_convs = self.masked and nb201_fused.SELECT_CONVS

    def forward(self, x: Tensor, arch: Mapping[str, Tensor]) -> Tensor:
        w = arch["cell"]
        if self.masked:
            return self._forward_masked(x, w)
        chosen = HardSelection.of(w) if self.discrete else None
        # fused: one gather of the arch weights per forward, shared by all cells
        coefs = self.cells[self._mixer].coefficients(w) if self._mixer is not None else None
        h = self.stem(x)
        for layer in self.cells:
            if isinstance(layer, NB201SearchCell):
                h = layer(h, w, chosen)
            elif coefs is not None and hasattr(layer, "mix"):
                h = layer.mix(h, coefs)
            else:
                h = layer(h)
        return self.head(h)

    def _forward_masked(self, x: Tensor, w: Tensor) -> Tensor:
        """A one-hot sample ``w`` through the fused cells, without a host sync (``nb201_fused.py``).

        ``picked = w * used`` keeps the selected entries (the others are exact zeros with zero
        gradient), and node i adds ``rest`` = the sum of its edges' other entries, computed as in
        :class:`HardSelection` (``w.sum - h``), so the value and every entry's gradient are the
        reference discrete forward's.
        """
        assert self._mixer is not None
        used = torch.nn.functional.one_hot(w.detach().argmax(-1), w.shape[-1]).to(w.dtype)
        picked = w * used
        rest = w.sum(1) - picked.sum(1)
        if self.training:
            self.last_used = used
        mixer = self.cells[self._mixer]
        # the selected-conv form (nb201_fused.SELECT_CONVS) for training forwards: one conv row per edge
        select = self.training and self._select_convs and all(
            layer.can_select() for layer in self.cells if hasattr(layer, "mix"))
        coefs = mixer.selected_coefficients(picked) if select else mixer.coefficients(picked)
        biases = mixer.rest_biases(HardSelection.node_sums(rest))
        h = self.stem(x)
        memo: dict = {}  # the cells of a stage share their BN-update masks (FusedNB201Cell.owner_mask)
        held = HeldBackStats(self._held_bns()) if self.training else None
        if self.training and self._owner_masks is not None:
            self._owner_masks.fill(used, memo)
        for layer in self.cells:
            h = layer.mix(h, coefs, biases, used, memo, held, select) if hasattr(layer, "mix") else layer(h)
        if held is not None:
            held.commit()
        return self.head(h)

    def _held_bns(self) -> list:
        """The fused cells' BNs with running statistics (their updates are held back per channel)."""
        if self._bns is None:
            self._bns = [m for layer in self.cells if hasattr(layer, "mix") for m in layer.modules()
                         if isinstance(m, _BN) and m.running_mean is not None]
        return self._bns

    def op_parameter_owners(self) -> list[tuple[nn.Parameter, list[int]]]:
        """(op parameter, owner of each row) of every fused cell; the owner indexes the flattened
        one-hot pattern ``last_used`` (the masked forward's sample), so the rows an optimizer may
        update after that forward are those whose owner entry is 1."""
        return [pair for layer in self.cells if hasattr(layer, "op_parameter_owners")
                for pair in layer.op_parameter_owners()]


class NB201Network(_Macro):
    """The benchmark's from-scratch network of one arch string (what the oracle's numbers were trained on)."""

    def __init__(self, arch: str | Sequence[str], num_classes: int = 10, C: int = 16, N: int = 5,
                 in_channels: int = 3) -> None:
        ops = str_to_arch(arch) if isinstance(arch, str) else tuple(arch)
        super().__init__(C, N, num_classes, in_channels, lambda c: NB201InferCell(c, ops))
        self.arch_ops = ops

    def forward(self, x: Tensor) -> Tensor:
        h = self.stem(x)
        for layer in self.cells:
            h = layer(h)
        return self.head(h)


# ---------------------------------------------------------------------- space
@dataclass
class NB201SpaceConfig(SearchSpaceConfig):
    #: stem width C (16 in the benchmark and [P]; [G]'s config uses 24, discrepancies.md #4)
    init_channels: int = 16
    #: cells per stage N (5 in the benchmark)
    cells_per_stage: int = 5
    #: op BN running statistics in the supernet ([G] default true; NB201 baselines report both)
    track_running_stats: bool = True


register_schema("search_space", "nb201", NB201SpaceConfig)


class NB201Space(SearchSpace):
    """Config keys: init_channels (16), cells_per_stage (5), track_running_stats (true), exclude_zero (false)."""

    #: tabular benchmark whose oracle can look up this space's genotypes (nas_cli.oracle)
    benchmark = "nb201"

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        super().__init__(cfg)
        self.init_channels = int(cfg.get("init_channels", 16))
        self.cells_per_stage = int(cfg.get("cells_per_stage", 5))
        self.track_running_stats = bool(cfg.get("track_running_stats", True))
        self.exclude_zero = bool(cfg.get("exclude_zero", False))
        if self.init_channels < 1 or self.cells_per_stage < 1:
            raise ConfigError("nb201 space: init_channels and cells_per_stage must be positive")
        self.op_names = [o for o in NB201_OPS if not (self.exclude_zero and o == "none")]

    def arch_specs(self, relax: RelaxationSpec) -> list[ArchTensorSpec]:
        if relax.learn_edges or relax.partial_channels != 1:
            raise ConfigError("the nb201 space has fixed unit edge weights and no partial channels; "
                              "use method.relaxation.learn_edges=false partial_channels=1")
        return [ArchTensorSpec("cell", (len(NB201_EDGES), len(self.op_names)), "ops")]

    #: one-hot samples can run masked through the fused cells (runtime.hard_forward=masked)
    supports_masked_hard = True

    def build_supernet(
        self, num_classes: int, in_channels: int, relax: RelaxationSpec, *, fused: bool = False,
        hard_forward: str = "selected",
    ) -> NB201Supernet:
        """``fused`` (``runtime.fused``): source-grouped fused cells (nb201_fused.py) for the mixture
        forward; built from the reference cells, so the same seed gives the same initial state.
        A discrete (one-hot) supernet keeps the reference cells unless ``hard_forward="masked"``."""
        from nas_cli.arch.sampling import SAMPLINGS  # lazy: nas_cli.arch imports nas_cli.spaces

        self.arch_specs(relax)
        discrete = SAMPLINGS.get(relax.sampling).one_hot
        return NB201Supernet(self.init_channels, self.cells_per_stage, num_classes, in_channels, self.op_names,
                             self.track_running_stats, discrete, fused=fused, hard_forward=hard_forward)

    def discretize(self, arch: Mapping[str, Tensor]) -> str:
        """Argmax per edge (first maximum on ties); no pruning, 'none' may win unless excluded."""
        w = arch["cell"].detach().to("cpu", torch.float64)
        return arch_to_str([self.op_names[int(k)] for k in w.argmax(-1).tolist()])

    def genotype_to_json(self, genotype: str) -> dict[str, Any]:
        return {"arch_str": genotype}

    def genotype_from_json(self, data: Mapping[str, Any]) -> str:
        text = data.get("arch_str") if isinstance(data, Mapping) else None
        if not isinstance(text, str):
            raise ConfigError(f"an NB201 genotype is {{'arch_str': '...'}}, got {data!r}")
        return arch_to_str(str_to_arch(text))

    def genotype_str(self, genotype: str) -> str:
        return genotype

    def one_hot(self, arch_str: str, device: torch.device | str = "cpu") -> dict[str, Tensor]:
        """Effective weights of one architecture (for scoring candidates with the supernet)."""
        ops = str_to_arch(arch_str)
        missing = [o for o in ops if o not in self.op_names]
        if missing:
            raise ConfigError(f"op '{missing[0]}' is excluded from this space (exclude_zero)")
        w = torch.zeros(len(NB201_EDGES), len(self.op_names), device=device)
        for e, o in enumerate(ops):
            w[e, self.op_names.index(o)] = 1.0
        return {"cell": w}


SPACES.add("nb201", NB201Space)


# ------------------------------------------------------------------ describing
#: class counts of the benchmark's datasets
NB201_DATASET_CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet16_120": 120}


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def describe_nb201(arch_string: str, C: int = 16, N: int = 5) -> Any:
    """A rich table describing one arch string: its edges and parameter counts per benchmark dataset."""
    from rich.console import Group
    from rich.table import Table

    ops = str_to_arch(arch_string)
    edges = Table(title=f"NB201 cell {arch_to_str(ops)}")
    edges.add_column("edge")
    edges.add_column("op")
    for (t, j), o in zip(NB201_EDGES, ops):
        edges.add_row(f"{t}<-{j}", o)
    params = Table(title=f"benchmark network (C={C}, N={N})")
    params.add_column("dataset")
    params.add_column("classes", justify="right")
    params.add_column("params", justify="right")
    params.add_column("MB (1e6)", justify="right")
    for name, k in NB201_DATASET_CLASSES.items():
        n = count_params(NB201Network(ops, k, C, N))
        params.add_row(name, str(k), f"{n:,}", f"{n / 1e6:.6f}")
    return Group(edges, params)


def main(argv: Sequence[str] | None = None) -> int:
    """``nas-arch-nb201 '<arch string>'``: print the cell and the benchmark network's parameter counts."""
    from nas_cli.errors import UserError
    from nas_cli.runtime.console import console, error_line

    p = argparse.ArgumentParser(prog="nas-arch-nb201", description=main.__doc__)
    p.add_argument("arch", help="NB201 arch string, e.g. '|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|...|'")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--cells", type=int, default=5)
    args = p.parse_args(argv)
    try:
        console.print(describe_nb201(args.arch, args.channels, args.cells))
    except UserError as e:
        error_line(str(e))
        return e.exit_code
    return 0

