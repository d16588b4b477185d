"""Evaluation (retraining) networks for DARTS-space genotypes (``darts_space.md`` §4-§5).

These are the fixed networks whose test error and parameter count the papers
report.  Module structure and names follow the reference code closely enough
that parameter counts match the published numbers exactly; the auxiliary head
lives under a module named ``auxiliary_head`` so that
:func:`nas_cli.spaces.base.count_parameters` excludes it (papers' convention).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from nas_cli.errors import ConfigError
from nas_cli.spaces.darts_ops import OPS, FactorizedReduce, Identity, ReLUConvBN, drop_path
from nas_cli.spaces.genotypes import Genotype


class EvalCell(nn.Module):
    """Discrete cell: node i = op_{2i}(state[j_{2i}]) + op_{2i+1}(state[j_{2i+1}]); output = concat."""

    def __init__(self, genotype: Genotype, C_pp: int, C_p: int, C: int, reduction: bool, reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        self.preprocess0: nn.Module = (
            FactorizedReduce(C_pp, C) if reduction_prev else ReLUConvBN(C_pp, C, 1, 1, 0)
        )
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0)
        pairs = genotype.reduce if reduction else genotype.normal
        self.concat = list(genotype.reduce_concat if reduction else genotype.normal_concat)
        self.multiplier = len(self.concat)
        self.indices = [j for _, j in pairs]
        self.ops = nn.ModuleList(
            OPS[name](C, 2 if reduction and j < 2 else 1, True, False) for name, j in pairs
        )

    #: a second CUDA stream for one branch of every node (runtime.branch_streams); None: one stream
    side_stream: "torch.cuda.Stream | None" = None

    def _branch(self, k: int, x: Tensor, drop_prob: float | Tensor) -> Tensor:
        op = self.ops[k]
        h = op(x)
        # identity branches are never dropped: dropping them would cut the cell's residual path
        # (a device-tensor probability -- CUDA-graph training -- is always applied: p = 0 keeps x exactly)
        if self.training and (isinstance(drop_prob, Tensor) or drop_prob > 0.0) and not isinstance(op, Identity):
            h = drop_path(h, drop_prob)
        return h

    def _pair(self, first: Callable[[], Tensor], second: Callable[[], Tensor]) -> tuple[Tensor, Tensor]:
        """Two computations that do not depend on each other, launched ``first`` then ``second``.

        With a side stream (``runtime.branch_streams``) ``first`` runs on it.  The cell's kernels are
        small (8x8..32x32 planes, 36..144 channels) and leave most of the GPU idle one at a time, so the
        two halves overlap; autograd runs each backward kernel on its forward kernel's stream, so the
        backward overlaps the same way.  The launch order is the one-stream order, so random draws
        (drop-path masks) come in the same order and a seed gives the same masks with one stream or two.
        The side stream takes the half launched first: with the main stream's half launched first the
        step lost most of its overlap (H200, uncompiled, graph-replayed, nineteenth session: 0.0678 s
        against 0.0697 s with one stream; side-first 0.0598 s against 0.0693 s).  Every fork waits for the main
        stream, so a block freed by one stream is reused only after its last reader; the join makes the
        main stream wait for the side one."""
        side = self.side_stream
        if side is None:
            return first(), second()
        main = torch.cuda.current_stream()
        side.wait_stream(main)
        with torch.cuda.stream(side):
            a = first()
        b = second()
        main.wait_stream(side)
        return a, b

    def forward(self, s0: Tensor, s1: Tensor, drop_prob: float | Tensor) -> Tensor:
        states = list(self._pair(lambda: self.preprocess0(s0), lambda: self.preprocess1(s1)))
        for i in range(len(self.ops) // 2):
            ja, jb = self.indices[2 * i], self.indices[2 * i + 1]
            a, b = self._pair(lambda: self._branch(2 * i, states[ja], drop_prob),
                              lambda: self._branch(2 * i + 1, states[jb], drop_prob))
            states.append(a + b)
        return torch.cat([states[i] for i in self.concat], dim=1)


#: values of runtime.branch_streams
BRANCH_STREAM_CHOICES = ("auto", "true", "false")


def resolve_branch_streams(setting: str, device: torch.device, compiled_cells: bool, replayed: bool,
                           data_parallel: bool = False) -> bool:
    """Whether the evaluation cells run their branches on two streams (``runtime.branch_streams``).

    ``auto`` takes them where they were measured faster -- a CUDA-graph-replayed step whose cells are
    not compiled whole (H200, fp32: uncompiled 0.0693 -> 0.0598 s in one call, nineteenth session;
    0.0704 -> 0.0605 s and 0.0683 -> 0.0589 s in the eighteenth; compiled per branch,
    ``runtime.compile_scope=branches``, 0.0449 -> 0.0411 s).  ``true`` is a ConfigError where they
    cannot run: without CUDA, and inside cells or networks compiled whole, where Inductor failed on the
    stream forks (torch 2.11: no fake impl for the deallocation syncs AOTAutograd inserts;
    ``benchmarks/cell_streams_debug.py`` reproduces it), and in data-parallel runs, whose gradient
    all-reduce hooks were never run beside two streams.  Compiled whole without streams stays the
    fastest setting (per cell 0.0376-0.0400 s between machine starts, the whole network 0.0362 s)."""
    setting = str(setting).lower()
    if setting not in BRANCH_STREAM_CHOICES:
        raise ConfigError(f"runtime.branch_streams must be auto, true or false, got '{setting}'")
    if setting == "false":
        return False
    why_not = ("no CUDA device" if device.type != "cuda"
               else "Inductor cannot compile the stream forks inside a compiled cell or network (use "
                    "runtime.compile_scope=branches or runtime.compile=false)" if compiled_cells
               else "data-parallel runs are not tested with two streams" if data_parallel else None)
    if setting == "true":
        if why_not is not None:
            raise ConfigError(f"runtime.branch_streams=true is not possible here: {why_not}")
        return True
    return why_not is None and replayed


def use_branch_streams(model: nn.Module, device: torch.device) -> torch.cuda.Stream:
    """Give every cell of ``model`` one shared side stream (cells run one after another, so one is enough)."""
    side = torch.cuda.Stream(device)
    for cell in model.modules():
        if isinstance(cell, EvalCell):
            cell.side_stream = side
    return side


class AuxiliaryHead(nn.Module):
    """Auxiliary classifier on the second reduction cell's output (extra gradient signal in training).

    CIFAR (8x8 input): AvgPool(5, stride 3) -> 2x2; ImageNet (7x7 input):
    AvgPool(5, stride 2) -> 2x2.  ``bn_768`` adds the BN after the 2x2 conv
    that [G]'s ImageNet copy has and [D]/[PC] omit (CIFAR always has it).
    """

    def __init__(self, C: int, num_classes: int, pool_stride: int, bn_768: bool):
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=pool_stride, padding=0, count_include_pad=False),
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False),
        ]
        if bn_768:
            layers.append(nn.BatchNorm2d(768))
        layers.append(nn.ReLU(inplace=False))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if min(x.shape[-2:]) < 5:
            # Small images (synthetic demo data at 8-16 px) leave the head a map smaller than the
            # 5x5 pooling window; pool adaptively to the same 2x2 so the head (and its loss) still work.
            # Paper-sized inputs (8x8 / 7x7 here) never take this path.
            x = nn.functional.adaptive_avg_pool2d(self.features[0](x), 2)
            return self.classifier(self.features[2:](x).flatten(1))
        return self.classifier(self.features(x).flatten(1))


class _EvalNetwork(nn.Module):
    """Shared cell stack / head / auxiliary logic of the CIFAR and ImageNet networks."""

    drop_path_prob: float

    def _build_cells(
        self, genotype: Genotype, C: int, layers: int, C_pp: int, C_p: int, reduction_prev: bool
    ) -> int:
        """Create ``self.cells``; returns the channel count feeding the auxiliary head (cell 2L//3)."""
        C_cur, C_aux = C, C_p
        cells = []
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_cur *= 2
            cell = EvalCell(genotype, C_pp, C_p, C_cur, reduction, reduction_prev)
            cells.append(cell)
            reduction_prev = reduction
            C_pp, C_p = C_p, cell.multiplier * C_cur
            if i == 2 * layers // 3:
                C_aux = C_p
        self.cells = nn.ModuleList(cells)
        self._aux_index = 2 * layers // 3
        self._c_final = C_p
        return C_aux

    def _run_cells(self, s0: Tensor, s1: Tensor) -> tuple[Tensor, Tensor | None]:
        aux_in = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self._aux_index:
                aux_in = s1
        return s1, aux_in

    def _aux(self, aux_in: Tensor | None) -> Tensor | None:
        head = getattr(self, "auxiliary_head", None)
        if head is None or not self.training or aux_in is None:
            return None
        return head(aux_in)


class NetworkCIFAR(_EvalNetwork):
    """CIFAR evaluation network (defaults: C=36, L=20, 10 classes, §4).

    ``forward`` returns ``(logits, logits_aux)``; ``logits_aux`` is None in eval
    mode or without an auxiliary head.  Set ``drop_path_prob`` per epoch.
    """

    def __init__(
        self,
        C: int = 36,
        num_classes: int = 10,
        layers: int = 20,
        auxiliary: bool = False,
        genotype: Genotype | None = None,
        drop_path_prob: float = 0.0,
        stem_multiplier: int = 3,
        in_channels: int = 3,
    ):
        super().__init__()
        if genotype is None:
            raise TypeError("NetworkCIFAR needs a genotype")
        self.drop_path_prob = drop_path_prob
        c_stem = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
        C_aux = self._build_cells(genotype, C, layers, c_stem, c_stem, reduction_prev=False)
        if auxiliary:
            self.auxiliary_head = AuxiliaryHead(C_aux, num_classes, pool_stride=3, bn_768=True)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(self._c_final, num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        s = self.stem(x)
        out, aux_in = self._run_cells(s, s)
        logits = self.classifier(self.global_pooling(out).flatten(1))
        return logits, self._aux(aux_in)


class NetworkImageNet(_EvalNetwork):
    """ImageNet mobile-setting network (defaults: C=48, L=14, 1000 classes, §5).

    Head pooling is adaptive (identical to the reference AvgPool2d(7) at 224x224
    input, but also valid for smaller test inputs).  ``aux_bn`` selects [G]'s
    auxiliary head variant with BN(768); default False = [D]/[PC].
    """

    def __init__(
        self,
        C: int = 48,
        num_classes: int = 1000,
        layers: int = 14,
        auxiliary: bool = False,
        genotype: Genotype | None = None,
        drop_path_prob: float = 0.0,
        aux_bn: bool = False,
        in_channels: int = 3,
    ):
        super().__init__()
        if genotype is None:
            raise TypeError("NetworkImageNet needs a genotype")
        self.drop_path_prob = drop_path_prob
        self.stem0 = nn.Sequential(
            nn.Conv2d(in_channels, C // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C // 2),
            nn.ReLU(inplace=False),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        C_aux = self._build_cells(genotype, C, layers, C, C, reduction_prev=True)
        if auxiliary:
            self.auxiliary_head = AuxiliaryHead(C_aux, num_classes, pool_stride=2, bn_768=aux_bn)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(self._c_final, num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        s0 = self.stem0(x)
        s1 = self.stem1(s0)
        out, aux_in = self._run_cells(s0, s1)
        logits = self.classifier(self.global_pooling(out).flatten(1))
        return logits, self._aux(aux_in)


def count_multiply_adds(model: nn.Module, input_size: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass per image (Conv2d and Linear only; the papers' convention).

    ``input_size`` is (C, H, W) or (N, C, H, W); the count is per image.  The
    model runs once in eval mode under ``no_grad`` (so auxiliary heads and
    drop-path are excluded) and its training flag is restored afterwards.
    """
    size = tuple(input_size)
    if len(size) == 3:
        size = (1,) + size
    batch = size[0]
    total = 0

    def conv_hook(mod: nn.Module, _inp: tuple[Tensor, ...], out: Tensor) -> None:
        nonlocal total
        assert isinstance(mod, nn.Conv2d)
        kh, kw = mod.kernel_size
        total += out.numel() * (mod.in_channels // mod.groups) * kh * kw

    def linear_hook(mod: nn.Module, _inp: tuple[Tensor, ...], out: Tensor) -> None:
        nonlocal total
        assert isinstance(mod, nn.Linear)
        total += out.numel() * mod.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(size, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total // batch
