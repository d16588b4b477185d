"""Candidate operations of the DARTS CNN search space (``darts_space.md`` §1).

One op table serves both the search supernet and the evaluation networks; the
two differ only in (a) the BN ``affine`` flag and (b) the extra non-affine BN
the search supernet puts after each pooling op (pooling outputs otherwise have
a different scale from the BN-normalised conv outputs they are mixed with).
Keeping a single table guarantees that a derived genotype is evaluated with
exactly the ops that were searched.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

#: The DARTS search-space ops in canonical column order (index = arch column).
PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)


class ReLUConvBN(nn.Module):
    """ReLU -> Conv -> BN (pre-activation, bias-free): the cell preprocessing block."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class DilConv(nn.Module):
    """ReLU -> dilated depthwise conv -> pointwise conv -> BN (``dil_conv_k``)."""

    def __init__(
        self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, dilation: int, affine: bool = True
    ):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                C_in, C_in, kernel_size, stride=stride, padding=padding, dilation=dilation, groups=C_in, bias=False
            ),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class SepConv(nn.Module):
    """Two stacked separable blocks (``sep_conv_k``); the stride lives in the first depthwise conv only."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True):
        super().__init__()
        self.op = nn.Sequential(
            DilConv(C_in, C_in, kernel_size, stride, padding, 1, affine),
            DilConv(C_in, C_out, kernel_size, 1, padding, 1, affine),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class Conv7x1_1x7(nn.Module):
    """ReLU -> Conv(1x7) -> Conv(7x1) -> BN; only used by NASNet/AmoebaNet-style genotypes."""

    def __init__(self, C: int, stride: int, affine: bool = True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C, C, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
            nn.Conv2d(C, C, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
            nn.BatchNorm2d(C, affine=affine),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class Identity(nn.Module):
    """Stride-1 skip connection.  A distinct class so eval cells can exempt it from drop-path."""

    def forward(self, x: Tensor) -> Tensor:
        return x


class Zero(nn.Module):
    """The ``none`` op: a zero tensor of the op's output shape.

    Computed as ``x * 0`` (not ``torch.zeros``) so that the output keeps the
    input's dtype/device/graph and the module behaves like the reference code.
    """

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Stride-2 reduction by two 1x1 convs on pixel-shifted inputs, concatenated (no padding).

    The one-pixel shift makes the two halves see complementary pixel grids, so
    no spatial position is discarded entirely.  Requires even ``C_out`` and
    even spatial sizes (true for every use in the DARTS networks).
    """

    def __init__(self, C_in: int, C_out: int, affine: bool = True):
        super().__init__()
        if C_out % 2 != 0:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(x)
        out = torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1)
        return self.bn(out)


def _pool(pool: nn.Module, C: int, search: bool) -> nn.Module:
    """Pooling op; in the search supernet followed by a non-affine BN (absent in eval nets)."""
    if search:
        return nn.Sequential(pool, nn.BatchNorm2d(C, affine=False))
    return pool


def _skip(C: int, stride: int, affine: bool) -> nn.Module:
    return Identity() if stride == 1 else FactorizedReduce(C, C, affine=affine)


#: Op constructor signature: (channels, stride, affine, search) -> module (C channels in and out).
OpBuilder = Callable[[int, int, bool, bool], nn.Module]

OPS: dict[str, OpBuilder] = {
    "none": lambda C, stride, affine, search: Zero(stride),
    "max_pool_3x3": lambda C, stride, affine, search: _pool(nn.MaxPool2d(3, stride=stride, padding=1), C, search),
    "avg_pool_3x3": lambda C, stride, affine, search: _pool(
        nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False), C, search
    ),
    "skip_connect": lambda C, stride, affine, search: _skip(C, stride, affine),
    "sep_conv_3x3": lambda C, stride, affine, search: SepConv(C, C, 3, stride, 1, affine=affine),
    "sep_conv_5x5": lambda C, stride, affine, search: SepConv(C, C, 5, stride, 2, affine=affine),
    "sep_conv_7x7": lambda C, stride, affine, search: SepConv(C, C, 7, stride, 3, affine=affine),
    "dil_conv_3x3": lambda C, stride, affine, search: DilConv(C, C, 3, stride, 2, 2, affine=affine),
    "dil_conv_5x5": lambda C, stride, affine, search: DilConv(C, C, 5, stride, 4, 2, affine=affine),
    "conv_7x1_1x7": lambda C, stride, affine, search: Conv7x1_1x7(C, stride, affine=affine),
}


def drop_path(x: Tensor, drop_prob: float | Tensor) -> Tensor:
    """Drop whole samples of ``x`` with probability ``drop_prob``; survivors are divided by the keep prob.

    Dividing by the keep probability keeps the expected value unchanged, so no
    rescaling is needed at evaluation time (where drop-path is off).  The mask
    is drawn on-device (no host sync), one Bernoulli per sample.  ``drop_prob`` may be
    a 0-dim device tensor (CUDA-graph training updates it in place each epoch).
    """
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    if isinstance(drop_prob, Tensor):
        keep_t = (1.0 - drop_prob).to(x.dtype)
        mask = torch.bernoulli(keep_t.expand(shape))
        return x * (mask / keep_t)
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * (mask / keep)


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """ShuffleNet channel shuffle: view (N, groups, C/groups, H, W), swap dims 1-2, flatten.

    Output channel ``i*groups + g`` is input channel ``g*(C/groups) + i``; in
    PC-DARTS this interleaves the processed channel block with the bypassed
    ones so that a different channel subset is processed on the next edge.
    """
    n, c, h, w = x.shape
    x = x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous()
    return x.view(n, c, h, w)
