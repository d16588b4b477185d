"""Fused NAS-Bench-201 search cell: every op reading one node runs once, as one kernel per op kind.

The reference :class:`~nas_cli.spaces.nb201.NB201SearchCell` runs every candidate op of each of
the 6 edges on its own -- about a hundred small kernels per cell.  The fusion here groups edges by
their *source* node (DARTS's fused cell groups by destination, darts_fused.py): all edges leaving
node j read the same tensor x_j, so once x_j is complete

* ``relu(x_j)`` -- the leading ReLU of every ReLUConvBN -- is computed once;
* all outgoing ``nor_conv_3x3`` and ``nor_conv_1x1`` convs are ONE dense conv over the same input
  with their weights concatenated along the output channels.  The 1x1 weights are zero-padded to
  3x3 in every forward (``F.pad``): the padded taps are constants, so a 1x1 weight receives
  exactly its own gradient and stays 1x1 (same parameters, same weight decay).  ``merge_1x1=False``
  runs one conv for the 3x3 edges and one for the 1x1 edges instead (fewer FLOPs, one more kernel);
* ONE non-affine BatchNorm over all those output channels with stacked running statistics (BN
  statistics are per channel, so nothing mixes across edges or op kinds);
* ``avg_pool_3x3`` is parameter-free and identical for all outgoing edges: computed once;
* ``skip_connect`` is x_j itself; ``none`` is skipped -- it is ``x*0``, which adds exactly 0 and
  sends exactly 0 gradient to its weight and input for finite activations (the DARTS fused cell's
  argument; with inf/NaN activations the run has diverged either way).

The mixture of source j is then one batched matmul: with the P op outputs stacked as
``O_j = cat(bn(conv(relu x_j)), x_j, pool(x_j))`` viewed as (N, P, C*H*W), the contributions to
its m destinations are ``M_j @ O_j`` -> (N, m, C*H*W), where ``M_j[q, p]`` is the arch weight of
(edge q, op of row p) and 0 where a conv row belongs to another edge.  A destination node is the
sum of its sources' contributions.  All ``M_j`` come from one gather of the (6, |O|) arch tensor,
done once per supernet forward (all cells share it) -- see :func:`mixture_index`.  With the Triton
mixing (``runtime.mixing``) O_j is never stacked: its three parts are the kernels' separate operands.

Parameters live in stacked tensors; the state-dict hooks of darts_fused.py present them under
the reference keys (same keys, shapes, values, parameter count), and the cell is built *from* a
reference cell, so initialisation and RNG consumption are identical.  Only the mixture forward is
fused.

**Masked one-hot forward** (``runtime.hard_forward=masked``; GDAS, GAEA GDAS, RS-WS): a one-hot
sample run through the *mixture* form, so no op choice reaches the host and the step can be
replayed from a CUDA graph.  With ``picked = w * used`` (``used`` the sample's one-hot pattern) the
matrices ``M_j`` hold the selected entries and exact zeros, and each node adds its ``rest`` (the
sum of its edges' other entries, value 0) -- the reference discrete edge output
``h·op_k*(x) + Σ_{k≠k*} h_k`` with the same value and the same gradient to every sample entry.  The
other ops' outputs are multiplied by exact zeros, so their weights receive exactly zero gradient;
what a zero gradient would still change is undone: the BN running statistics (and batch counters)
of unselected ops are not updated (:meth:`FusedNB201Cell.mix` with ``used``), and
:class:`~nas_cli.arch.hard_forward.FreezeUnselected` keeps their weights and momentum through the
optimizer step -- a reference step skips parameters without a gradient.  It saves the host sync of
each forward.

**Selected convs** (``SELECT_CONVS``, training forwards): at most one of an edge's two conv ops is
selected, so each source runs one 3x3 conv per edge with the selected op's weight
(``conv_merge.select_3x3``: ``s3*w3 + s1*pad(w1)`` with the sample's 0/1 masks; zeros where the edge
selected neither), half the merged conv's output channels.  Its BN's running statistics hold both ops'
blocks; each block takes the batch statistics and the held-back update keeps the selected op's
(``_BN.forward(..., repeat=2)``), and ``M_j``'s conv row of an edge is the sum of its two conv entries,
one of them an exact 0 (:meth:`FusedNB201Cell.selected_coefficients`).  Pool, skip and the parameter-free
rows still run for every edge; eval-mode forwards (running statistics per op) keep the full form.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas_cli.errors import ConfigError
from nas_cli.spaces.darts_fused import (
    FusedStorage,
    HeldBackStats,
    Slot,
    StatsUpdate,
    _BN,
    _Pool,
    _same,
    _Stage,
    adopt_reference_state,
    grouped_pointwise,
)
from nas_cli.spaces import source_inputs
from nas_cli.spaces.conv_merge import merge_1x1_into_3x3, select_3x3
from nas_cli.spaces.mixing import mix_rows
from nas_cli.spaces.nb201 import NB201_EDGES, NB201_NODES, NB201SearchCell, ReLUConvBN, Zero
from nas_cli.spaces.triton_support import nhwc_only

#: conv op kinds in the order of their output channels (the 3x3 block first, then the 1x1 block)
CONV_OPS: tuple[str, ...] = ("nor_conv_3x3", "nor_conv_1x1")
#: parameter-free op rows of O_j after the conv rows, in this order
EXTRA_OPS: tuple[str, ...] = ("skip_connect", "avg_pool_3x3")
#: owner lists (row -> flat arch entry) seen so far -> id; cells with equal lists share mask gathers
_OWNER_IDS: dict[tuple[int, ...], int] = {}
#: whether the masked supernets built from here on gather all BN-update masks of a training forward at
#: once (:class:`OwnerMasks`); off, each cell's ``owner_mask`` gathers its own (a switch for
#: ``benchmarks/nb201_merge.py``, which sets it before it builds the step)
#: (set per run with ``runtime.kernel_switches.owner_masks_at_once``: nas_cli/runtime/switches.py)
OWNER_MASKS_AT_ONCE = True
#: the NHWC route (``runtime.mixing=triton`` with the Triton BN kernels, training mode): the source-input
#: kernel writes relu(x_j) channels_last, the merge kernel the conv weight, so cuDNN's NHWC conv kernels
#: run without the NCHW<->NHWC transposes it puts around them for NCHW tensors, and the BN kernels turn
#: the NHWC conv output into NCHW rows for the weighted sum (and the gradient back); everything else
#: stays NCHW.  ``benchmarks/nb201_merge.py --flag nhwc_convs`` times both settings.
#: (set per run with ``runtime.kernel_switches.nhwc_convs``: nas_cli/runtime/switches.py)
NHWC_CONVS = True
#: the selected-conv forward: a masked *training* forward (GDAS, RS-WS) runs, per edge, only the conv op
#: its sample selected, as one 3x3 weight per edge (``conv_merge.select_3x3``): half the merged conv's
#: output channels, BN work and conv rows of the weighted sums.  Same values (see :meth:`FusedNB201Cell.mix`);
#: ``benchmarks/nb201_merge.py --flag select_convs`` times both settings.
#: (set per run with ``runtime.kernel_switches.select_convs``: nas_cli/runtime/switches.py)
SELECT_CONVS = True


def op_kind(m: nn.Module) -> str:
    """The NB201 op name of a reference op module (the cell stores modules, not names)."""
    if isinstance(m, Zero):
        return "none"
    if isinstance(m, nn.Identity):
        return "skip_connect"
    if isinstance(m, nn.AvgPool2d):
        return "avg_pool_3x3"
    if isinstance(m, ReLUConvBN):
        kernel = tuple(m.op[1].kernel_size)  # type: ignore[union-attr]
        if kernel == (3, 3):
            return "nor_conv_3x3"
        if kernel == (1, 1):
            return "nor_conv_1x1"
    raise ValueError(f"no fused NB201 implementation for op module {type(m).__name__}")


def source_edges(j: int) -> list[int]:
    """Edges leaving node j, in increasing destination order (j+1, ..., last node)."""
    return [e for e, (_, s) in enumerate(NB201_EDGES) if s == j]


def mixture_index(ops: Sequence[str]) -> tuple[list[int], list[tuple[int, int]]]:
    """Where each entry of every ``M_j`` comes from in ``pad(w.flatten(), (0, 1))``.

    ``ops``: the op name of each column of the (6, |O|) arch tensor.  Returns the flat gather
    index of all ``M_j`` (row-major, concatenated over sources) and the (m, P) shape of each;
    index ``6*|O|`` is the appended zero (conv rows of the other edges).
    """
    n_ops = len(ops)
    zero = len(NB201_EDGES) * n_ops
    convs = [o for o in CONV_OPS if o in ops]
    extras = [o for o in EXTRA_OPS if o in ops]
    index: list[int] = []
    shapes: list[tuple[int, int]] = []
    for j in range(NB201_NODES - 1):
        edges = source_edges(j)
        m = len(edges)
        for q, e in enumerate(edges):
            row = [zero] * (len(convs) * m)
            for k, o in enumerate(convs):
                row[k * m + q] = e * n_ops + ops.index(o)
            row += [e * n_ops + ops.index(o) for o in extras]
            index += row
        shapes.append((m, len(convs) * m + len(extras)))
    return index, shapes


def selected_mixture_index(ops: Sequence[str]) -> tuple[list[int], list[int], list[tuple[int, int]]]:
    """:func:`mixture_index` for the selected-conv forward (``SELECT_CONVS``; both conv ops in ``ops``):
    O_j has one conv row per edge, the edge's selected conv op, so ``M_j[q, q]`` is the sum of the
    edge's two conv entries (of a masked sample: the selected one's, the other is an exact 0).  Returns
    the two gather indices whose gathers add up to all ``M_j`` and the (m, P) shapes: the full rows'
    3x3 block and extras, and their 1x1 block (the appended zero under the extras)."""
    assert all(o in ops for o in CONV_OPS)
    index, shapes = mixture_index(ops)
    zero = len(NB201_EDGES) * len(ops)
    first: list[int] = []
    second: list[int] = []
    pos = 0
    for m, p in shapes:
        for _ in range(m):
            row, pos = index[pos:pos + p], pos + p
            first += row[:m] + row[2 * m:]
            second += row[m:2 * m] + [zero] * (p - 2 * m)
    return first, second, [(m, p - m) for m, p in shapes]


# ------------------------------------------------------------------ stages
class _SharedInputConvs(_Stage):
    """The 3x3 and 1x1 convs of every edge leaving one node: one dense conv over the shared input.

    Output channels: ``[3x3 of edge 0..m-1, 1x1 of edge 0..m-1]`` (blocks of C).  ``specs`` index
    the convs in that order (3x3 first), the same order as the BN built over the output.
    """

    def __init__(self, convs3: Sequence[nn.Module], convs1: Sequence[nn.Module], merge_1x1: bool) -> None:
        super().__init__()
        convs = [*convs3, *convs1]
        assert convs and all(isinstance(c, nn.Conv2d) for c in convs)
        _same([(c.in_channels, c.out_channels) for c in convs], "conv channels")  # type: ignore[union-attr]
        for c, k in [*((c, 3) for c in convs3), *((c, 1) for c in convs1)]:
            settings = (tuple(c.kernel_size), tuple(c.stride), tuple(c.padding), tuple(c.dilation),  # type: ignore
                        c.groups, c.bias is None, c.padding_mode)
            if settings != ((k, k), (1, 1), (k // 2, k // 2), (1, 1), 1, True, "zeros"):
                raise ValueError(f"cannot fuse an NB201 conv with settings {settings}")
        self.weight3: nn.Parameter | None = None
        self.weight1: nn.Parameter | None = None
        if convs3:
            self._stack("weight3", "weight", [c.weight for c in convs3], param=True)  # type: ignore[union-attr]
        if convs1:
            self._stack("weight1", "weight", [c.weight for c in convs1], param=True)  # type: ignore[union-attr]
        # one index over both lists (3x3 first), matching the output channel blocks
        self.specs = [(k + (len(convs3) if attr == "weight1" else 0), name, attr, a, b)
                      for k, name, attr, a, b in self.specs]
        #: one conv with the 1x1 weights zero-padded to 3x3; a plain attribute (no state), so it
        #: can be switched at any time (same result, fewer kernels vs fewer FLOPs)
        self.merge_1x1 = merge_1x1

    def forward(self, r: Tensor, impl: str = "native", select: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """``impl``: the cell's kernel setting (``runtime.mixing``); ``triton`` builds the merged
        weight in one kernel (``spaces/conv_merge.py``).  ``select``: per output channel of the 3x3
        block, whether its edge selected the 3x3 and the 1x1 op (0/1 masks): then one conv per edge,
        the selected op's (``conv_merge.select_3x3``), m*C output channels instead of 2*m*C."""
        if select is not None:
            assert self.weight3 is not None and self.weight1 is not None
            w = select_3x3(self.weight3, self.weight1, select[0], select[1], impl, nhwc_only(r))
            return F.conv2d(r, w, None, 1, 1)
        if self.weight3 is None:
            return grouped_pointwise(r, self.weight1, 1)  # type: ignore[arg-type]
        if self.weight1 is None:
            return F.conv2d(r, self.weight3, None, 1, 1)
        if self.merge_1x1:
            # the centre tap of a padding-1 3x3 conv reads exactly what a padding-0 1x1 conv reads;
            # a channels_last r (the NHWC route) gets its weight in that layout from the merge kernel
            return F.conv2d(r, merge_1x1_into_3x3(self.weight3, self.weight1, impl, nhwc_only(r)), None, 1, 1)
        return torch.cat([F.conv2d(r, self.weight3, None, 1, 1), grouped_pointwise(r, self.weight1, 1)], 1)


class _Source(nn.Module):
    """Every op reading one node: ``forward(x_j) -> O_j`` of shape (N, P, C*H*W), as row groups."""

    def __init__(self, ops: Sequence[Sequence[nn.Module]], kinds: Sequence[str], merge_1x1: bool) -> None:
        """``ops[q][o]``: reference op module of column o on the q-th outgoing edge."""
        super().__init__()
        col = {k: o for o, k in enumerate(kinds)}
        convs = [k for k in CONV_OPS if k in col]
        #: (q, column) of each conv in output-channel order
        self.conv_refs = [(q, col[k]) for k in convs for q in range(len(ops))]
        self.conv: _SharedInputConvs | None = None
        self.bn: _BN | None = None
        if convs:
            rcb = [ops[q][o] for q, o in self.conv_refs]
            by_kind = {k: [m.op[1] for m, (_, o) in zip(rcb, self.conv_refs) if o == col[k]] for k in convs}
            self.conv = _SharedInputConvs(by_kind.get("nor_conv_3x3", []), by_kind.get("nor_conv_1x1", []),
                                          merge_1x1)
            self.bn = _BN([m.op[2] for m in rcb])
        self.skip = "skip_connect" in col
        self.pool: _Pool | None = None
        if "avg_pool_3x3" in col:
            self.pool = _Pool([edge[col["avg_pool_3x3"]] for edge in ops])
        #: with ``runtime.mixing=triton``: ReLU, skip and a 3x3 average pool (stride 1, no padded taps)
        #: as one kernel per direction (spaces/source_inputs.py); another pool keeps the separate ops
        self.fused_inputs = self.pool is None or self.pool.is_avg3

    def _nhwc_conv(self, x: Tensor) -> bool:
        """Whether the conv and its BN take the NHWC route (module switch ``NHWC_CONVS``): the training
        forward with the Triton BN kernels, which take a channels_last input and return NCHW rows."""
        bn = self.bn
        return (NHWC_CONVS and bn is not None and bn.training and bn.impl == "triton" and not bn.sync
                and bn.weight is None and x.dtype == torch.float32 and x.shape[1] > 1
                and x.shape[2] * x.shape[3] > 1 and not torch.compiler.is_compiling())

    def forward(self, x: Tensor, bn_update: StatsUpdate | None = None, impl: str = "native",
                select: tuple[Tensor, Tensor] | None = None) -> list[Tensor]:
        """O_j as its row groups (conv/BN rows, skip row, pool row; each (N, rows, C*H*W)), not
        concatenated: the Triton weighted sum reads each where it lies, the native one concatenates.
        ``bn_update``: which BN channels' running statistics take this batch (None: all); ``impl``:
        the cell's ``runtime.mixing`` kernels, which also build the merged conv weight and compute
        the ReLU, skip and pool rows with the source-input kernels.  ``select``: the selected-conv
        forward's masks (:meth:`_SharedInputConvs.forward`; needs ``bn_update``): one conv row per edge,
        whose BN statistics go to both conv ops' blocks, of which ``bn_update`` keeps the selected one."""
        has_conv = self.conv is not None and self.bn is not None
        has_pool = self.pool is not None
        if impl == "triton" and self.fused_inputs and (has_conv or has_pool) and source_inputs.supported(x):
            # ReLU, skip and pool from one kernel per direction (spaces/source_inputs.py); the ReLU
            # channels_last when the conv and its BN run in NHWC (see NHWC_CONVS)
            r, s, p = source_inputs.source_inputs(x, has_conv, has_pool, has_conv and self._nhwc_conv(x))
        else:
            r = F.relu(x) if has_conv else None
            s = x
            p = self.pool(x) if self.pool is not None else None
        rows: list[Tensor] = []
        if has_conv:
            rows.append(self.bn(self.conv(r, impl, select), bn_update, 1 if select is None else 2))  # type: ignore
        if self.skip:
            rows.append(s)
        if has_pool:  # (the kernels' p is an empty tensor without a pool)
            rows.append(p)  # type: ignore[arg-type]
        n, c, h, w = x.shape
        return [r.reshape(n, -1, c * h * w) for r in rows]


# --------------------------------------------------------------------- cell
class FusedNB201Cell(nn.Module):
    """Drop-in replacement for a mixture :class:`NB201SearchCell` (same math, same state_dict), built from one."""

    def __init__(self, ref: NB201SearchCell, merge_1x1: bool = True) -> None:
        """``ref`` may be a discrete cell: the fused cell runs one-hot samples in the masked form."""
        super().__init__()
        edges = [list(e) for e in ref.edges]
        kinds = _same([[op_kind(m) for m in e] for e in edges], "op lists")
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"duplicate ops in the NB201 cell: {kinds}")
        if not any(k != "none" for k in kinds):
            raise ConfigError("runtime.fused needs at least one op other than 'none'")
        self.kinds = list(kinds)
        index, shapes = mixture_index(self.kinds)
        self.register_buffer("_mix_index", torch.tensor(index, dtype=torch.long), persistent=False)
        self._mix_shapes = shapes
        #: the selected-conv forward's mixing matrices (both conv ops in the list; see SELECT_CONVS)
        self._has_both_convs = all(k in self.kinds for k in CONV_OPS)
        self._sel_shapes: list[tuple[int, int]] = []
        if self._has_both_convs:
            first, second, self._sel_shapes = selected_mixture_index(self.kinds)
            self.register_buffer("_sel_index", torch.tensor([first, second], dtype=torch.long), persistent=False)

        sources: list[_Source] = []
        slots: list[Slot] = []
        counters: list[str] = []
        for j in range(NB201_NODES - 1):
            out_edges = source_edges(j)
            src = _Source([edges[e] for e in out_edges], self.kinds, merge_1x1)
            sources.append(src)
            for stage_name, inner in (("conv", "op.1."), ("bn", "op.2.")):
                stage = getattr(src, stage_name)
                if stage is None:
                    continue
                for k, name, attr, a, b in stage.specs:
                    q, o = src.conv_refs[k]
                    slots.append((f"edges.{out_edges[q]}.{o}.{inner}{name}",
                                  f"fused.parts.{j}.{stage_name}.{attr}", a, b))
                for k, name in stage.counters:
                    q, o = src.conv_refs[k]
                    ref_key = f"edges.{out_edges[q]}.{o}.{inner}{name}"
                    slots.append((ref_key, "fused.bn_batches", len(counters), None))
                    counters.append(ref_key)
        self.fused = FusedStorage(sources, len(counters))
        adopt_reference_state(self, ref, slots, counters)
        # which reference op (edge e, column o) owns each row of each stacked tensor, as the flat
        # index e*|O|+o of the arch tensor (masked one-hot forward); rows of no op do not occur here
        n_ops = len(self.kinds)
        owners: dict[str, list[int]] = {}
        for ref_key, fused_key, a, b in slots:
            _, e, o = ref_key.split(".")[:3]
            rows = owners.setdefault(fused_key, [])
            stop = a + 1 if b is None else b
            rows.extend([-1] * (stop - len(rows)))
            rows[a:stop] = [int(e) * n_ops + int(o)] * (stop - a)
        assert all(min(r) >= 0 for r in owners.values())
        self._owners: dict[str, list[int]] = owners
        self._owner_index: dict[tuple[str, torch.device], Tensor] = {}
        #: equal owner lists share an id (the cells of a stage), so a forward gathers each mask once
        self._owner_ids = {key: _OWNER_IDS.setdefault(tuple(rows), len(_OWNER_IDS)) for key, rows in owners.items()}
        #: the kernels of the weighted sums and the merged conv weights (runtime.mixing; set by use_mixing_impl)
        self.supports_mixing_impl = True
        self.mixing_impl = "native"

    @property
    def merge_1x1(self) -> bool:
        return all(s.conv is None or s.conv.merge_1x1 for s in self.fused.parts)

    @merge_1x1.setter
    def merge_1x1(self, value: bool) -> None:
        for s in self.fused.parts:
            if s.conv is not None:
                s.conv.merge_1x1 = bool(value)

    def coefficients(self, weights: Tensor) -> list[Tensor]:
        """The (m, P) mixing matrices ``M_j`` from the (6, |O|) arch weights: one gather for all sources.

        Depends only on the op list, so a supernet computes it once per forward for all its cells.
        """
        flat = F.pad(weights.reshape(-1), (0, 1))  # the appended 0 fills the other edges' conv rows
        parts = flat.index_select(0, self._mix_index).split([m * p for m, p in self._mix_shapes])
        return [t.view(m, p) for t, (m, p) in zip(parts, self._mix_shapes)]

    def can_select(self) -> bool:
        """Whether a masked training forward can run the selected-conv form (``SELECT_CONVS``): both
        conv ops in the list, merged into one 3x3 conv per source, BNs that take a part of their
        channels (:meth:`~nas_cli.spaces.darts_fused._BN.can_repeat`)."""
        return (self._has_both_convs and self.merge_1x1
                and all(s.conv is not None and s.bn is not None and s.bn.can_repeat() for s in self.fused.parts))

    def selected_coefficients(self, weights: Tensor) -> list[Tensor]:
        """:meth:`coefficients` of the selected-conv forward, from a masked sample's ``w * used``: the
        two conv entries of an edge summed into its one conv row (one of them is an exact 0), so each
        entry's gradient is the row's, times 0 for the unselected op where ``used`` multiplies it."""
        flat = F.pad(weights.reshape(-1), (0, 1))
        both = flat.index_select(0, self._sel_index.view(-1)).view(2, -1)
        parts = (both[0] + both[1]).split([m * p for m, p in self._sel_shapes])
        return [t.view(m, p) for t, (m, p) in zip(parts, self._sel_shapes)]

    def owner_mask(self, fused_key: str, used: Tensor, memo: dict[Any, Tensor] | None = None,
                   dtype: torch.dtype | None = None, drop: bool = False) -> Tensor:
        """Per row of the stacked tensor ``fused_key``: the ``used`` entry (one-hot (6, |O|)) of its
        op, as ``dtype`` (None: ``used``'s; ``torch.bool``: whether it is selected); ``drop``: one
        minus it.  ``memo`` (one per forward) shares the result between cells with the same owner list."""
        memo_key = (self._owner_ids[fused_key], dtype, drop)
        if memo is not None and memo_key in memo:
            return memo[memo_key]
        if drop:
            mask = 1 - self.owner_mask(fused_key, used, memo, dtype)
        else:
            key = (fused_key, used.device)
            index = self._owner_index.get(key)
            if index is None:
                index = self._owner_index[key] = torch.tensor(self._owners[fused_key], device=used.device)
            mask = used.reshape(-1).index_select(0, index)
            mask = mask > 0 if dtype is torch.bool else mask if dtype is None else mask.to(dtype)
        if memo is not None:
            memo[memo_key] = mask
        return mask

    def mask_keys(self) -> list[tuple[str, bool]]:
        """(stacked tensor, is a counter) of every owner mask :meth:`mix` takes in a masked training
        forward: the BN batch counters (long), each source BN's running statistics (keep and drop) and,
        for the selected-conv forward, each source's conv weights (one entry per output channel)."""
        keys = [("fused.bn_batches", True)] if self.fused.bn_batches.numel() else []
        keys += [(f"fused.parts.{j}.bn.running_mean", False) for j, src in enumerate(self.fused.parts)
                 if src.bn is not None and src.bn.running_mean is not None]
        if self._has_both_convs:
            keys += [(f"fused.parts.{j}.conv.{w}", False) for j in range(len(self.fused.parts))
                     for w in ("weight3", "weight1")]
        return keys

    def op_parameter_owners(self) -> list[tuple[nn.Parameter, list[int]]]:
        """(parameter, owner of each row) for every op parameter: the row's entry in a flattened
        one-hot (6, |O|) pattern, i.e. the op whose weights the row holds."""
        return [(p, list(self._owners[name])) for name, p in self.named_parameters()]

    def rest_biases(self, rests: Sequence[Tensor]) -> list[Tensor]:
        """Per source j, the (m_j,) vector that adds node j+1's ``rests[j]`` (a scalar) to source j's
        first destination, node j+1, and 0 to the others: the ``bias`` of its weighted sum
        (:func:`~nas_cli.spaces.mixing.mix_rows`), so the rest needs no kernels of its own.  Depends
        only on the op list, like :meth:`coefficients`: computed once per forward for all cells."""
        return [F.pad(r.reshape(1), (0, m - 1)) for r, (m, _) in zip(rests, self._mix_shapes)]

    def mix(self, x: Tensor, coefs: Sequence[Tensor], biases: Sequence[Tensor] | None = None,
            used: Tensor | None = None, memo: dict[Any, Tensor] | None = None,
            held: HeldBackStats | None = None, select: bool = False) -> Tensor:
        """The cell output from its input and the matrices of :meth:`coefficients`.

        Masked one-hot forward: ``biases`` (:meth:`rest_biases`) add each node's rest term, and in
        training mode only the ops ``used`` marks (one-hot (6, |O|)) update their BN running
        statistics and counters.
        ``memo``: one dict per network forward for :meth:`owner_mask`; ``held``: the forward's
        :class:`HeldBackStats` (required with ``used`` in training mode), committed by the caller.

        ``select`` (masked training forward where :meth:`can_select`; ``coefs`` from
        :meth:`selected_coefficients`): each edge's conv row is the op it selected, or zeros where it
        selected neither conv.  Same values as the full form: the selected op's conv, BN statistics
        and normalisation are the same arithmetic on the same numbers, every other conv row of the
        full form is multiplied by an exact 0, and an unselected op's weights, BN statistics and arch
        entry get exactly zero gradient and no update either way.
        """
        masked = used is not None and self.training
        if select and not (masked and self.can_select()):
            raise ValueError("the selected-conv forward needs a masked training forward and can_select()")
        if self.training and self.fused.bn_batches.numel():
            if masked:
                self.fused.bn_batches.add_(self.owner_mask("fused.bn_batches", used, memo, torch.long))
            else:
                self.fused.bn_batches.add_(1)
        node = x
        pending: Tensor | None = None  # contributions so far to the nodes after ``node``
        for j, (src, m) in enumerate(zip(self.fused.parts, coefs)):
            bn_update = None
            if masked and src.bn is not None and src.bn.running_mean is not None:
                if held is None:
                    raise ValueError("a masked training forward needs HeldBackStats for the BN statistics")
                key, dtype = f"fused.parts.{j}.bn.running_mean", src.bn.running_mean.dtype
                bn_update = StatsUpdate(held, self.owner_mask(key, used, memo, dtype),
                                        self.owner_mask(key, used, memo, dtype, drop=True))
            sel = None
            if select:
                sel = (self.owner_mask(f"fused.parts.{j}.conv.weight3", used, memo, used.dtype),  # type: ignore
                       self.owner_mask(f"fused.parts.{j}.conv.weight1", used, memo, used.dtype))  # type: ignore
            o = src(node, bn_update, self.mixing_impl, sel)
            # (N, dests, C*H*W): pending + Σ_p M[q, p] O[:, p] (+ the rest of node j+1), as batched
            # matmuls or spaces/mixing.py's kernels
            out = mix_rows(m, o, pending, self.mixing_impl, None if biases is None else biases[j])
            if out.shape[1] == 1:
                return out.view(x.shape)
            # split (not indexing): its backward is one cat, not a zero-fill per slice
            head, pending = out.split([1, out.shape[1] - 1], dim=1)
            node = head.view(x.shape)
        raise AssertionError("unreachable: the last source has exactly one destination")

    def forward(self, x: Tensor, weights: Tensor, chosen: object | None = None) -> Tensor:
        if chosen is not None:
            raise ValueError("the fused NB201 cell runs one-hot samples masked (mix with biases and used)")
        return self.mix(x, self.coefficients(weights))


class OwnerMasks:
    """Every owner mask of a masked training forward through ``cells``, from one gather.

    :meth:`FusedNB201Cell.owner_mask` gathers one mask per distinct owner list and dtype, and the drop
    masks take one more kernel each: about 24 tiny kernels per NB201 forward (three stages of distinct
    lists).  :meth:`fill` gathers all of them at once, derives the drop masks and the counters' long
    masks with one kernel each, and puts views of the results in the forward's memo, where
    ``owner_mask`` finds them.  Same values: a gather and ``1 - m`` either way.
    """

    def __init__(self, cells: Sequence[FusedNB201Cell]) -> None:
        stats: dict[int, list[int]] = {}
        counters: dict[int, list[int]] = {}
        for cell in cells:
            for key, counter in cell.mask_keys():
                (counters if counter else stats).setdefault(cell._owner_ids[key], cell._owners[key])
        self._ids = [*stats, *counters]
        self._sizes = [len(rows) for rows in (*stats.values(), *counters.values())]
        self._rows = [r for rows in (*stats.values(), *counters.values()) for r in rows]
        self._n_stats = sum(self._sizes[: len(stats)])
        self._split = len(stats)
        self._index: dict[torch.device, Tensor] = {}

    def fill(self, used: Tensor, memo: dict[Any, Tensor]) -> None:
        """Put every mask of this forward (sample ``used``) in ``memo`` (keys as ``owner_mask``'s)."""
        if not self._rows:
            return
        index = self._index.get(used.device)
        if index is None:
            index = self._index[used.device] = torch.tensor(self._rows, device=used.device)
        keep = used.reshape(-1).index_select(0, index)
        stats, counters = keep.split([self._n_stats, keep.numel() - self._n_stats])
        drop = 1 - stats
        longs = counters.to(torch.long)
        n = self._split
        for i, k, d in zip(self._ids[:n], stats.split(self._sizes[:n]), drop.split(self._sizes[:n])):
            memo[(i, used.dtype, False)], memo[(i, used.dtype, True)] = k, d
        for i, c in zip(self._ids[n:], longs.split(self._sizes[n:])):
            memo[(i, torch.long, False)] = c
