"""Fused DARTS search cell: each op type runs once per node over the stacked incoming edges.

The reference :class:`~nas_cli.spaces.darts.SearchCell` runs every candidate op
of every edge separately -- thousands of tiny kernels per step (PC-DARTS ops
see only C/K = 4..16 channels).  Every op of the DARTS space is *per-channel*
(depthwise convs, pooling, BN statistics, ReLU) or *per-edge block-diagonal*
(the pointwise 1x1 convs), so the E edges of a node that share a stride can be
processed as one tensor with E*c channels:

* depthwise convs: weights concatenated along dim 0, ``groups = E*c``;
* 1x1 convs (and FactorizedReduce's pair of 1x1 convs): ``groups = E`` (resp. ``2E``)
  with the per-edge weights concatenated -- a block-diagonal conv, run as one batched matmul;
* pooling and ReLU: applied once to the stacked tensor;
* BatchNorm: one ``F.batch_norm`` over the stacked channels with stacked running stats (statistics
  are per channel, so nothing mixes across edges).  Across op types too: every op of the group that
  ends in a BN (all but the stride-1 identity) is normalised by ONE BN over the concatenation of
  their pre-BN outputs -- one call per node instead of six or seven.

The node output ``Σ_e β_e Σ_o w[e,o] op_o(x_e)`` is then one batched matmul of the (ops x edges)
coefficient row with that stack (plus one for the identity), its coefficients gathered from the
arch tensor once per cell and forward.  The ``none`` op is skipped: it is ``x*0``, which
adds exactly 0 to the node and sends exactly 0 gradient to its weight and input
for finite inputs (for inf/NaN inputs the reference would produce NaN -- the
run has diverged either way).

Parameters live in stacked tensors (no per-forward ``torch.cat`` of weights),
but state-dict hooks translate to and from the reference layout, so
checkpoints, parameter counts and reports are identical for both paths.  The
cell is built *from* a reference cell (same RNG consumption, same init).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas_cli.spaces.batchnorm import BN_IMPLS, batch_norm_repeated, sync_batch_norm
from nas_cli.spaces.avgpool import avg_pool_3x3
from nas_cli.spaces.depthwise import depthwise_conv2d, is_depthwise
from nas_cli.spaces.pointwise import grouped_pointwise_triton
from nas_cli.spaces import maxpool
from nas_cli.spaces.mixing import mix_rows
from nas_cli.errors import ConfigError
from nas_cli.runtime.masked_update import choose_, snapshot
from nas_cli.spaces.darts_ops import (
    Conv7x1_1x7,
    DilConv,
    FactorizedReduce,
    Identity,
    ReLUConvBN,
    SepConv,
    Zero,
)

if TYPE_CHECKING:  # pragma: no cover
    from nas_cli.spaces.darts import SearchCell

#: (reference key, fused key, start, stop) relative to the cell: the reference tensor is
#: ``fused[start:stop]``; ``stop is None`` means the 0-dim element ``fused[start]`` (BN batch counters).
Slot = tuple[str, str, int, "int | None"]
#: (edge index within the group, reference name inside the leaf, attribute, start, stop)
Spec = tuple[int, str, str, int, int]


# ------------------------------------------------------------------ stages
class _Stage(nn.Module):
    """One layer of a fused op, applied to the channel stack of E edges.

    ``specs`` records which dim-0 range of which stacked tensor holds each
    edge's reference tensor; ``counters`` lists the BN batch counters (kept
    at cell level so one kernel increments all of them).
    """

    def __init__(self) -> None:
        super().__init__()
        self.specs: list[Spec] = []
        self.counters: list[tuple[int, str]] = []

    def _stack(self, attr: str, ref_name: str, tensors: Sequence[Tensor], param: bool) -> None:
        stacked = torch.cat([t.detach() for t in tensors], 0).clone()
        if param:
            setattr(self, attr, nn.Parameter(stacked, requires_grad=tensors[0].requires_grad))
        else:
            self.register_buffer(attr, stacked)
        start = 0
        for k, t in enumerate(tensors):
            self.specs.append((k, ref_name, attr, start, start + t.shape[0]))
            start += t.shape[0]


def _same(values: Sequence[Any], what: str) -> Any:
    if any(v != values[0] for v in values[1:]):
        raise ValueError(f"cannot fuse edges whose {what} differ: {values}")
    return values[0]


class _ReLU(_Stage):
    def __init__(self, mods: Sequence[nn.Module]) -> None:
        super().__init__()

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)


class _Conv(_Stage):
    """E convs with ``groups=g`` -> one conv with ``groups=E*g`` (block-diagonal, same math)."""

    def __init__(self, convs: Sequence[nn.Module]) -> None:
        super().__init__()
        assert all(isinstance(c, nn.Conv2d) for c in convs)
        c0: nn.Conv2d = convs[0]  # type: ignore[assignment]
        _same([(c.stride, c.padding, c.dilation, c.groups, c.padding_mode, tuple(c.weight.shape),
                c.bias is None) for c in convs], "conv settings")  # type: ignore[union-attr]
        if c0.padding_mode != "zeros" or isinstance(c0.padding, str):
            raise ValueError("only zero-padded convs with explicit padding can be fused")
        self.stride, self.padding, self.dilation = c0.stride, c0.padding, c0.dilation
        self.groups = c0.groups * len(convs)
        self._stack("weight", "weight", [c.weight for c in convs], param=True)  # type: ignore[union-attr]
        self.bias: nn.Parameter | None = None
        if c0.bias is not None:
            self._stack("bias", "bias", [c.bias for c in convs], param=True)  # type: ignore[union-attr]

        k = tuple(c0.kernel_size)
        #: a stride-1 unpadded 1x1 conv per edge (dense within the edge) is a batched matmul
        self.pointwise = k == (1, 1) and tuple(c0.stride) == (1, 1) and tuple(c0.padding) == (0, 0) \
            and c0.groups == 1 and c0.bias is None
        #: depthwise and grouped 1x1 convs take their kernels from runtime.depthwise/pointwise
        #: (spaces/depthwise.py, spaces/pointwise.py)
        self.supports_depthwise_impl = is_depthwise(c0)
        self.depthwise_impl = "native"
        self.supports_pointwise_impl = self.pointwise
        self.pointwise_impl = "native"

    def forward(self, x: Tensor) -> Tensor:
        if self.pointwise:
            return grouped_pointwise(x, self.weight, self.groups, self.pointwise_impl)
        if self.depthwise_impl == "triton":
            return depthwise_conv2d(x, self.weight, self.stride, self.padding, self.dilation)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


def grouped_pointwise(x: Tensor, weight: Tensor, groups: int, impl: str = "native") -> Tensor:
    """``F.conv2d(x, weight, groups=groups)`` for a 1x1 kernel, as one broadcast batched matmul
    (``impl="triton"``: the Triton kernels of :mod:`nas_cli.spaces.pointwise`).

    Same math (a 1x1 conv is a matmul per pixel).  Measured faster than the grouped conv on both
    devices: on CPU (oneDNN) the grouped-conv backward is ~4x slower than E separate convs and the
    matmul ~2x faster; on an H200 cuDNN runs these tiny grouped 1x1 convs (c = 4..16 channels per
    group) with layout conversions around every call and a slow weight-gradient kernel, and the
    fused PC-DARTS search step went from 0.187 s to 0.172 s with the matmul.  Channels-last inputs
    (whose layout would need a copy) keep the grouped conv.
    """
    if impl == "triton":
        return grouped_pointwise_triton(x, weight, groups)
    if not x.is_contiguous():
        return F.conv2d(x, weight, None, 1, 0, 1, groups)
    n, c_in, h, w = x.shape
    wg = weight.reshape(groups, weight.shape[0] // groups, c_in // groups)
    y = torch.matmul(wg, x.reshape(n, groups, c_in // groups, h * w))  # contiguous (einsum's is not)
    return y.reshape(n, weight.shape[0], h, w)


class HeldBackStats:
    """The running-statistics updates of one masked forward, held back per channel, in bulk.

    A masked one-hot forward (``nb201_fused.py``) runs every op, but only the sampled ops' BN
    channels may take the batch's statistics.  Per BN, cloning the two buffers, letting the kernels
    update the clones and ``where``-ing them back was six tiny kernels, about 270 per NB201 forward.
    Here all buffers are copied with one multi-tensor op when the forward starts, each BN's kernels
    update its copies, and :meth:`commit` takes the copies' values on the kept channels with two
    more (``runtime/masked_update.py``).
    """

    def __init__(self, bns: Sequence[_BN]) -> None:
        self.buffers = [t for bn in bns for t in (bn.running_mean, bn.running_var)]  # type: ignore[misc]
        self.copies = snapshot(self.buffers)
        self._slot = {id(bn): 2 * i for i, bn in enumerate(bns)}
        self._masks: dict[int, tuple[Tensor, Tensor]] = {}

    def copies_for(self, bn: _BN, keep: Tensor, drop: Tensor) -> tuple[Tensor, Tensor]:
        """``bn``'s (running_mean, running_var) copies for its kernels to update; ``keep``/``drop``:
        per channel 1/0 and 0/1 in the buffers' dtype."""
        i = self._slot[id(bn)]
        self._masks[i] = self._masks[i + 1] = (keep, drop)
        return self.copies[i], self.copies[i + 1]

    def commit(self) -> None:
        """Write the updates of the BNs that ran into their buffers, on the kept channels."""
        live = sorted(self._masks)
        if not live:
            return
        choose_([self.buffers[i] for i in live], [self.copies[i] for i in live],
                [self._masks[i][1] for i in live], [self._masks[i][0] for i in live])  # own: the dropped channels
        self._masks = {}


class StatsUpdate:
    """What a masked forward tells a :class:`_BN`: its per-channel keep/drop masks and where the
    held-back updates go."""

    __slots__ = ("held", "keep", "drop")

    def __init__(self, held: HeldBackStats, keep: Tensor, drop: Tensor) -> None:
        self.held, self.keep, self.drop = held, keep, drop


class _BN(_Stage):
    """E BatchNorms -> one ``F.batch_norm`` over the stacked channels (statistics are per channel).

    With ``track_running_stats=False`` there are no buffers and, like ``nn.BatchNorm2d``, batch
    statistics are used in eval mode too.
    """

    def __init__(self, bns: Sequence[nn.Module]) -> None:
        super().__init__()
        assert all(isinstance(b, nn.BatchNorm2d) for b in bns)
        b0: nn.BatchNorm2d = bns[0]  # type: ignore[assignment]
        _same([(b.eps, b.momentum, b.affine, b.track_running_stats) for b in bns], "BN settings")  # type: ignore
        if b0.momentum is None:
            raise ValueError("only BNs with a fixed momentum can be fused")
        self.eps, self.momentum = float(b0.eps), float(b0.momentum)
        self.weight: nn.Parameter | None = None
        self.bias: nn.Parameter | None = None
        if b0.affine:
            self._stack("weight", "weight", [b.weight for b in bns], param=True)  # type: ignore[union-attr]
            self._stack("bias", "bias", [b.bias for b in bns], param=True)  # type: ignore[union-attr]
        self.running_mean: Tensor | None
        self.running_var: Tensor | None
        if b0.track_running_stats:
            self._stack("running_mean", "running_mean", [b.running_mean for b in bns], param=False)  # type: ignore
            self._stack("running_var", "running_var", [b.running_var for b in bns], param=False)  # type: ignore
            self.counters = [(k, "num_batches_tracked") for k in range(len(bns))]
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)

    #: training-mode kernels (runtime.batchnorm; nas_cli/spaces/batchnorm.py), same function
    impl: str = "native"
    supports_bn_impl = True

    #: statistics over all data-parallel ranks (batchnorm.use_sync_batchnorm)
    sync: bool = False

    def forward(self, x: Tensor, update: StatsUpdate | None = None, repeat: int = 1) -> Tensor:
        """``update``: which channels' running statistics take this batch (training mode; None: all
        do).  The masked one-hot NB201 forward passes it, so ops that were not sampled keep their
        statistics exactly, as in a reference step where they do not run: the kernels update copies
        (saved for backward, so never modified afterwards), and :meth:`HeldBackStats.commit` puts
        the copies' values into the buffers on the kept channels once the forward is done.

        ``repeat`` (with ``update`` only): ``x`` holds 1/repeat of the channels, and each block of the
        statistics takes its batch statistics (the selected-conv forward, ``nb201_fused.SELECT_CONVS``;
        :meth:`can_repeat` says where)."""
        rm, rv = self.running_mean, self.running_var
        if repeat != 1:
            if not (self.training and self.can_repeat()):
                raise ValueError("a BN over a part of its channels runs in training mode, non-affine, unsynchronised")
            if rm is None or rv is None:  # batch statistics, nothing to update
                return self._forward(x, None, None)
            if update is None:
                raise ValueError("a BN over a part of its channels needs the masked forward's StatsUpdate")
            new_m, new_v = update.held.copies_for(self, update.keep, update.drop)
            return batch_norm_repeated(x, new_m, new_v, self.momentum, self.eps, self.impl, repeat)
        if update is None or not self.training or rm is None or rv is None:
            return self._forward(x, rm, rv)
        new_m, new_v = update.held.copies_for(self, update.keep, update.drop)
        return self._forward(x, new_m, new_v)

    def can_repeat(self) -> bool:
        """Whether :meth:`forward` takes ``repeat``: non-affine and not synchronised (a block's
        statistics are this process's batch statistics)."""
        return self.weight is None and not self.sync

    def _forward(self, x: Tensor, rm: Tensor | None, rv: Tensor | None) -> Tensor:
        if self.training and self.sync:
            return sync_batch_norm(x, rm, rv, self.momentum, self.eps, self.weight, self.bias)
        if self.training and self.weight is None and self.impl != "native":
            return BN_IMPLS[self.impl](x, rm, rv, self.momentum, self.eps)
        batch_stats = self.training or rm is None
        return F.batch_norm(x, rm, rv, self.weight, self.bias, batch_stats, self.momentum, self.eps)


class _Pool(_Stage):
    """Pooling is per channel: the reference module applied once to the stack.

    A stride-1 ``avg_pool_3x3`` (``count_include_pad=False``) runs with ``runtime.depthwise=triton``
    through the kernels of ``spaces/avgpool.py`` (:func:`avg_pool_3x3`): PyTorch's average-pool
    backward was most of the pooling's device time in the NB201 step.
    """

    def __init__(self, pools: Sequence[nn.Module]) -> None:
        super().__init__()
        _same([repr(p) for p in pools], "pooling settings")
        self.pool = pools[0]
        p = self.pool
        self._avg3 = (isinstance(p, nn.AvgPool2d) and p.kernel_size in (3, (3, 3)) and p.stride in (1, (1, 1))
                      and p.padding in (1, (1, 1)) and not p.count_include_pad and not p.ceil_mode
                      and p.divisor_override is None)
        #: (k, stride, padding) of a max pool the kernels of spaces/maxpool.py take
        self._max: tuple[int, int, int] | None = None
        if (isinstance(p, nn.MaxPool2d) and all(isinstance(v, int) for v in (p.kernel_size, p.stride, p.padding))
                and p.dilation == 1 and not p.ceil_mode and not p.return_indices):
            self._max = (int(p.kernel_size), int(p.stride), int(p.padding))  # type: ignore[arg-type]
        self.supports_depthwise_impl = self._avg3 or self._max is not None
        self.depthwise_impl = "native"

    @property
    def is_avg3(self) -> bool:
        """A stride-1 3x3 average pool without padded taps (what the Triton pooling kernels compute)."""
        return self._avg3

    def forward(self, x: Tensor) -> Tensor:
        if self.depthwise_impl == "triton" and self._avg3:
            return avg_pool_3x3(x)
        if self._max is not None:
            return maxpool.max_pool2d(x, *self._max, self.depthwise_impl)
        return self.pool(x)


class _FactorizedConvs(_Stage):
    """FactorizedReduce's two stride-2 1x1 convs of E edges as one conv with ``groups=2E``.

    ``conv_2(x[:, :, 1:, 1:])`` with a 1x1 kernel and stride 2 reads exactly
    ``x[:, :, 1::2, 1::2]`` (and ``conv_1(x)`` reads ``x[:, :, ::2, ::2]``); for
    the even sizes FactorizedReduce requires both have the same shape.  The two
    subsampled inputs are interleaved per edge so that the output already has
    the reference layout ``[conv_1(x_e), conv_2(x_e)]`` per edge.
    """

    def __init__(self, frs: Sequence[nn.Module]) -> None:
        super().__init__()
        assert all(isinstance(f, FactorizedReduce) for f in frs)
        shapes = _same([tuple(f.conv_1.weight.shape) for f in frs], "FactorizedReduce shapes")  # type: ignore
        self.c_in = shapes[1]
        for f in frs:
            if f.conv_1.bias is not None or f.conv_2.bias is not None:  # type: ignore[union-attr]
                raise ValueError("FactorizedReduce convs with bias cannot be fused")
        half = shapes[0]
        weights = [w for f in frs for w in (f.conv_1.weight, f.conv_2.weight)]  # type: ignore[union-attr]
        self.weight = nn.Parameter(torch.cat([w.detach() for w in weights], 0).clone())
        for k in range(len(frs)):
            self.specs.append((k, "conv_1.weight", "weight", 2 * k * half, (2 * k + 1) * half))
            self.specs.append((k, "conv_2.weight", "weight", (2 * k + 1) * half, (2 * k + 2) * half))
        self.groups = 2 * len(frs)
        self.supports_pointwise_impl = True
        self.pointwise_impl = "native"

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        even, odd = x[:, :, ::2, ::2], x[:, :, 1::2, 1::2]
        e = self.groups // 2
        pair = torch.stack([even.reshape(n, e, self.c_in, *even.shape[2:]),
                            odd.reshape(n, e, self.c_in, *odd.shape[2:])], dim=2)
        return grouped_pointwise(pair.reshape(n, 2 * x.shape[1], *even.shape[2:]), self.weight, self.groups,
                                 self.pointwise_impl)


#: leaf module type -> fused stage (a dispatch table: the op modules are the registry's names)
STAGES: dict[type, Callable[[Sequence[nn.Module]], _Stage]] = {
    nn.ReLU: _ReLU,
    nn.Conv2d: _Conv,
    nn.BatchNorm2d: _BN,
    nn.MaxPool2d: _Pool,
    nn.AvgPool2d: _Pool,
    FactorizedReduce: _FactorizedConvs,
}


def _leaves(m: nn.Module, path: str = "") -> list[tuple[str, nn.Module]]:
    """Flatten an op into (state-dict path prefix, leaf module) in execution order."""
    if isinstance(m, nn.Sequential):
        return [leaf for name, child in m.named_children() for leaf in _leaves(child, f"{path}{name}.")]
    if isinstance(m, (DilConv, SepConv, ReLUConvBN, Conv7x1_1x7)):
        return _leaves(m.op, f"{path}op.")
    if isinstance(m, FactorizedReduce):  # relu -> (conv_1 | conv_2) -> bn
        return [(f"{path}relu.", m.relu), (path, m), (f"{path}bn.", m.bn)]
    if isinstance(m, (Identity, nn.Identity)):
        return []
    if type(m) in STAGES:
        return [(path, m)]
    raise ValueError(f"no fused implementation for op module {type(m).__name__}")


class _FusedOp(nn.Module):
    """One candidate op for the E edges of a group; a leading ReLU is shared by the group.

    With ``split_final_bn`` an op ending in a BatchNorm leaves it out (``final_bn`` keeps the E
    reference BNs and ``final_path`` their path): the group runs one BN for all its ops instead.
    """

    def __init__(self, refs: Sequence[nn.Module], split_final_bn: bool = False) -> None:
        super().__init__()
        flat = [_leaves(r) for r in refs]
        _same([[(p, type(m)) for p, m in f] for f in flat], "op structures")
        paths = [p for p, _ in flat[0]]
        leaves = [[m for _, m in position] for position in zip(*flat)]  # per position: the E leaves
        self.pre_relu = bool(leaves) and isinstance(leaves[0][0], nn.ReLU)
        if self.pre_relu:
            paths, leaves = paths[1:], leaves[1:]
        self.final_bn: list[nn.Module] = []
        self.final_path = ""
        if split_final_bn and leaves and isinstance(leaves[-1][0], nn.BatchNorm2d):
            self.final_bn, self.final_path = leaves[-1], paths[-1]
            paths, leaves = paths[:-1], leaves[:-1]
        self.paths = paths
        self.stages = nn.ModuleList(STAGES[type(group[0])](group) for group in leaves)

    def forward(self, x: Tensor, x_relu: Tensor | None) -> Tensor:
        h = x_relu if self.pre_relu else x
        for stage in self.stages:
            h = stage(h)
        return h  # type: ignore[return-value]


class _EdgeGroup(nn.Module):
    """The E edges of one node that share a stride: every non-``none`` op once over their stack.

    The ops whose last layer is a BatchNorm (all but the stride-1 ``skip_connect``) share ONE
    BatchNorm: their outputs before it are concatenated on the channel dim and normalised together
    (statistics are per channel, so nothing mixes; one BN call instead of six or seven).
    ``forward`` returns that normalised stack, (N, P*E*c, H', W') with the ``bn_ops`` in order,
    and the outputs of the other ops (``plain_ops``), each (N, E*c, H', W').
    """

    def __init__(self, edges: Sequence[nn.Module], cols: Sequence[int]) -> None:
        super().__init__()
        self.ops = nn.ModuleList(_FusedOp([e.ops[o] for e in edges], split_final_bn=True)  # type: ignore[index]
                                 for o in cols)
        self.shares_relu = any(op.pre_relu for op in self.ops)
        #: positions in ``ops`` (= columns of the cell's arch tensor without ``none``)
        self.bn_ops = [q for q, op in enumerate(self.ops) if op.final_bn]
        self.plain_ops = [q for q, op in enumerate(self.ops) if not op.final_bn]
        self.bn: _BN | None = _BN([m for q in self.bn_ops for m in self.ops[q].final_bn]) if self.bn_ops else None

    def forward(self, x: Tensor) -> tuple[Tensor | None, list[Tensor]]:
        xr = F.relu(x) if self.shares_relu else None
        y = None
        if self.bn is not None:
            y = self.bn(_cat([self.ops[q](x, xr) for q in self.bn_ops]))
        return y, [self.ops[q](x, xr) for q in self.plain_ops]


class FusedStorage(nn.Module):
    """A fused cell's storage (``cell.fused``): its stage groups (DARTS: edge groups per node;
    NB201: one per source node) and one counter per reference BN (``num_batches_tracked``),
    kept together so one kernel increments all of them (see :func:`adopt_reference_state`)."""

    def __init__(self, parts: Sequence[nn.Module], n_bn: int) -> None:
        super().__init__()
        self.parts = nn.ModuleList(parts)
        self.register_buffer("bn_batches", torch.zeros(n_bn, dtype=torch.long))


# --------------------------------------------------------------------- cell
class FusedSearchCell(nn.Module):
    """Drop-in replacement for a :class:`SearchCell` (same forward, same state_dict), built from one."""

    def __init__(self, ref: "SearchCell") -> None:
        super().__init__()
        self.nodes, self.reduction = ref.nodes, ref.reduction
        self.preprocess0, self.preprocess1 = ref.preprocess0, ref.preprocess1
        edges = list(ref.edges)
        self.k = int(getattr(edges[0], "k", 1))
        #: the weighted sums' kernels (runtime.mixing; set by use_mixing_impl)
        self.supports_mixing_impl = True
        self.mixing_impl = "native"
        #: the stencil kernels of the bypassed channels' 2x2 max pool (runtime.depthwise; spaces/maxpool.py)
        self.supports_depthwise_impl = self.k > 1 and self.reduction
        self.depthwise_impl = "native"
        cols = [o for o, m in enumerate(edges[0].ops) if not isinstance(m, Zero)]  # type: ignore[arg-type]
        if not cols:
            raise ConfigError("runtime.fused needs at least one op other than 'none'")

        # plan: per node, groups of consecutive inputs with the same stride
        # (reduction cell: inputs 0,1 are stride 2, intermediate nodes stride 1)
        groups: list[_EdgeGroup] = []
        #: per node: (group index, first input, number of inputs, first edge row, stride)
        self._plan: list[list[tuple[int, int, int, int, int]]] = []
        slots: list[Slot] = []
        counters: list[str] = []
        off = 0
        for i in range(self.nodes):
            node: list[tuple[int, int, int, int, int]] = []
            j = 0
            while j < 2 + i:
                stride = 2 if self.reduction and j < 2 else 1
                j1 = j
                while j1 < 2 + i and (2 if self.reduction and j1 < 2 else 1) == stride:
                    j1 += 1
                gi = len(groups)
                group = _EdgeGroup(edges[off + j : off + j1], cols)
                groups.append(group)
                node.append((gi, j, j1 - j, off + j, stride))
                # (stage, fused key prefix, edge/op of each stacked leaf -> reference key prefix)
                stages: list[tuple[_Stage, str, Callable[[int], str]]] = []
                for q, op in enumerate(group.ops):
                    for s, (path, stage) in enumerate(zip(op.paths, op.stages)):
                        stages.append((stage, f"fused.parts.{gi}.ops.{q}.stages.{s}.",
                                       lambda k, q=q, path=path, e0=off + j: f"edges.{e0 + k}.ops.{cols[q]}.{path}"))
                if group.bn is not None:  # the group's shared final BN: leaves ordered (op, edge)
                    def bn_ref(k: int, group: _EdgeGroup = group, e: int = j1 - j, e0: int = off + j) -> str:
                        q = group.bn_ops[k // e]
                        return f"edges.{e0 + k % e}.ops.{cols[q]}.{group.ops[q].final_path}"
                    stages.append((group.bn, f"fused.parts.{gi}.bn.", bn_ref))
                for stage, fkey, ref_of in stages:
                    for k, name, attr, a, b in stage.specs:
                        slots.append((ref_of(k) + name, fkey + attr, a, b))
                    for k, name in stage.counters:
                        slots.append((ref_of(k) + name, "fused.bn_batches", len(counters), None))
                        counters.append(ref_of(k) + name)
                j = j1
            self._plan.append(node)
            off += 2 + i
        self.fused = FusedStorage(groups, len(counters))
        adopt_reference_state(self, ref, slots, counters)
        # mixing coefficients of every group in the order its batched matmuls read them: the shared-BN
        # stack's (op, edge) rows, then each plain op's edges.  One gather of the (E, |O|) arch
        # tensor (and one of the edge weights) per forward serves all groups of the cell
        n_ops = len(edges[0].ops)
        index: list[int] = []
        self._mix_sizes: list[int] = []
        for gi, (group, (_, _, e, row, _)) in enumerate(zip(groups, (g for node in self._plan for g in node))):
            for q in [*group.bn_ops, *group.plain_ops]:
                index += [(row + edge) * n_ops + cols[q] for edge in range(e)]
            self._mix_sizes.append(len(group.ops) * e)
        self.register_buffer("_mix_index", torch.tensor(index, dtype=torch.long), persistent=False)
        self.register_buffer("_mix_edges", torch.tensor(index, dtype=torch.long) // n_ops, persistent=False)

    def forward(self, s0: Tensor, s1: Tensor, op_weights: Tensor, edge_weights: Tensor | None) -> Tensor:
        """``op_weights`` (E, |O|); ``edge_weights`` (E,) or None for unit edge weights."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        coef = op_weights.reshape(-1).index_select(0, self._mix_index)
        if edge_weights is not None:
            coef = coef * edge_weights.index_select(0, self._mix_edges)
        coefs = coef.split(self._mix_sizes)
        if self.training:
            self.fused.bn_batches.add_(1)
        groups = self.fused.parts
        k = self.k
        # PC-DARTS: each state split once into its sampled 1/k channels and the bypassed rest
        # (split, not two slices per use: its backward is one cat, not zero-fills and copies)
        parts = [_split(t, k) for t in states]
        for node in self._plan:
            y: Tensor | None = None
            bypass: Tensor | None = None
            for gi, j0, e, row, stride in node:
                x = _cat([p[0] for p in parts[j0 : j0 + e]])
                group = groups[gi]
                stacked, plain = group(x)
                out0 = stacked if stacked is not None else plain[0]
                n, c, h, wd = out0.shape[0], x.shape[1] // e, *out0.shape[2:]
                # y + Σ_o Σ_e coef[e,o] · op_o(x_e): (1, rows) @ (N, rows, c*H*W) per image, as batched
                # matmuls or spaces/mixing.py; the rows of the shared-BN stack are (op, edge) pairs
                cf = coefs[gi].view(1, -1)
                rows = 0
                for o, m in ([(stacked, len(group.bn_ops))] if stacked is not None else []) + [(o, 1) for o in plain]:
                    y = mix_rows(cf[:, rows : rows + m * e], o.reshape(n, m * e, -1), y, self.mixing_impl)
                    rows += m * e
                if k > 1:
                    # PC-DARTS: the other channels bypass the ops (2x2 max-pooled on stride-2 edges);
                    # shuffle∘cat is a linear channel permutation, so Σ_e β_e shuffle(cat(y_e, b_e))
                    # = shuffle(cat(Σ_e β_e y_e, Σ_e β_e b_e)): one shuffle per node
                    x2 = _cat([p[1] for p in parts[j0 : j0 + e]])
                    if stride == 2:
                        x2 = maxpool.max_pool2d(x2, 2, 2, 0, self.depthwise_impl)
                    b3 = x2.reshape(n, e, -1)
                    if edge_weights is None:
                        b = b3.sum(dim=1, keepdim=True)
                        bypass = b if bypass is None else bypass + b
                    else:
                        bypass = mix_rows(edge_weights[row : row + e].view(1, e), b3, bypass, self.mixing_impl)
            assert y is not None
            y = y.view(n, c, h, wd)
            if bypass is not None:
                # channel_shuffle(cat([y, bypass]), k) in one copy: interleave the k chunks of c channels
                chunks = [y, *bypass.view(n, k - 1, c, h, wd).unbind(1)]
                y = torch.stack(chunks, dim=2).view(n, k * c, h, wd)
            states.append(y)
            parts.append(_split(y, k))
        return torch.cat(states[2:], dim=1)


def _split(t: Tensor, k: int) -> tuple[Tensor, Tensor | None]:
    """(first C/k channels, the rest) of an NCHW tensor; (t, None) for k = 1."""
    if k == 1:
        return t, None
    c = t.shape[1] // k
    head, tail = t.split([c, t.shape[1] - c], dim=1)
    return head, tail


def _cat(xs: Sequence[Tensor]) -> Tensor:
    return xs[0] if len(xs) == 1 else torch.cat(list(xs), dim=1)


# ------------------------------------------------------------- state dict
def adopt_reference_state(cell: nn.Module, ref: nn.Module, slots: Sequence[Slot], counters: Sequence[str]) -> None:
    """Give a fused ``cell`` the state_dict layout of the reference cell ``ref`` it was built from.

    Shared by the fused DARTS and NB201 cells.  Contract: the fused storage is the child (a :class:`FusedStorage`)
    ``cell.fused`` (its keys start with ``fused.``), the reference's per-edge state lives under
    ``edges.``, ``slots`` cover every reference key there, and ``counters`` (reference keys of the
    BN batch counters) are the entries of the vector ``cell.fused.bn_batches``, in that order.
    Copies the reference counters, records the slots in reference key order and registers the
    state-dict hooks that translate between the two layouts.
    """
    ref_state = ref.state_dict()
    if counters:  # carry the reference counters over (a fresh cell: all zero)
        cell.fused.bn_batches.copy_(torch.stack([ref_state[k] for k in counters]))
    order = {k: n for n, k in enumerate(ref_state)}
    covered = {s[0] for s in slots}
    missing = [k for k in ref_state if k.startswith("edges.") and k not in covered]
    if missing:
        raise ValueError(f"fused cell does not cover reference state {missing[:3]}")
    cell._slots = sorted(slots, key=lambda s: order[s[0]])
    # fused entries no reference key maps to must be empty (the counter vector of a cell whose ops
    # have no BN): the reference layout has nothing to rebuild them from, so loading fills them in
    own = cell.state_dict()
    slotted = {s[1] for s in slots}
    cell._empty_fused = {k: own[k].dtype for k in own if k.startswith("fused.") and k not in slotted}
    if any(own[k].numel() for k in cell._empty_fused):
        raise ValueError(f"fused cell state {list(cell._empty_fused)[:3]} has no reference counterpart")
    meta = getattr(ref_state, "_metadata", {})
    cell._ref_metadata = {k: dict(v) for k, v in meta.items() if k == "edges" or k.startswith("edges.")}
    cell.register_state_dict_post_hook(_to_reference_state)
    cell.register_load_state_dict_pre_hook(_from_reference_state)


def _to_reference_state(module: nn.Module, state: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    """state_dict post-hook: replace the stacked tensors by views in the reference layout."""
    for ref_key, fused_key, a, b in module._slots:
        t = state[prefix + fused_key]
        state[prefix + ref_key] = t[a] if b is None else t[a:b]
    fused = prefix + "fused."
    for key in [k for k in state if k.startswith(fused)]:
        del state[key]
    meta = getattr(state, "_metadata", None)
    if meta is not None:
        for key in [k for k in meta if k == prefix + "fused" or k.startswith(fused)]:
            del meta[key]
        for key, value in module._ref_metadata.items():
            meta[prefix + key] = dict(value)


def _from_reference_state(module: nn.Module, state: dict[str, Any], prefix: str, local_metadata: Any,
                          strict: bool, missing_keys: list[str], unexpected_keys: list[str],
                          error_msgs: list[str]) -> None:
    """load_state_dict pre-hook: stack reference-layout tensors into the fused keys.

    A stacked tensor is only assembled when all its reference pieces are
    present; otherwise they are left alone, so strict loading reports them.
    """
    pieces: dict[str, list[tuple[int, str, bool]]] = {}
    for ref_key, fused_key, a, b in module._slots:
        pieces.setdefault(fused_key, []).append((a, prefix + ref_key, b is None))
    for fused_key, parts in pieces.items():
        if not all(key in state for _, key, _ in parts):
            continue
        parts.sort()
        tensors = [state.pop(key) for _, key, _ in parts]
        stacked = torch.stack(tensors) if parts[0][2] else torch.cat(tensors, 0)
        state[prefix + fused_key] = stacked
    for key, dtype in module._empty_fused.items():
        state.setdefault(prefix + key, torch.empty(0, dtype=dtype))
