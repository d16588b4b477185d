"""Depthwise convolutions as Triton kernels (``runtime.depthwise``).

Why: after fusing the edges of a node (``darts_fused``), the depthwise convolutions of the
SepConv/DilConv ops were the largest item in the PC-DARTS search step's kernel profile (H200,
2026-12-02: about 28 % of the device time; the weight gradient alone 11 %, 76 us per call).  Their
tensors are tiny-channel (E*C/K = 8..80 channels) but large in batch x pixels (256 x 32 x 32), and
PyTorch's native fp32 depthwise weight-gradient kernel reduces every (channel, tap) pair over the
whole batch separately -- it reads the input once per tap.

The kernels here compute the same function with one pass over the data per direction:

* forward: tiles of planes x rows x columns, the K*K taps read through the cache (strided forwards
  keep ``F.conv2d``, measured faster);
* input gradient: the same gather, transposed (stride-2 taps whose position is not a multiple of
  the stride contribute nothing);
* weight gradient: each program owns one channel and a slice of the batch x pixel range and keeps
  all K*K tap sums in registers, so the input and the output gradient are each read once; the
  per-slice partial sums are added in a fixed order afterwards (deterministic, no atomics).

Accumulation is fp32 for every input dtype.  Same math as ``F.conv2d(..., groups=C)``; results differ
only by summation order (``tests/test_depthwise.py`` states tolerances).  Only what the DARTS space
needs is supported: square kernels, symmetric stride/padding/dilation, no bias, NCHW-contiguous
inputs; anything else falls back to ``F.conv2d``.  The gradients are not themselves differentiable (no method in nas_cli
differentiates through a supernet's weight gradient).

On CPU the kernels run only under Triton's interpreter (``TRITON_INTERPRET=1``), which is how the
tests check them without a GPU.  What the depthwise and 1x1 kernels share (setting resolution,
work splitting, gradient-need detection) is in :mod:`nas_cli.spaces.triton_support`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas_cli.spaces import depthwise_nhwc as nhwc
from nas_cli.spaces.triton_support import (as_graph_input, autocast_input, available, check_impl, compute_dtype,
                                           nhwc_only, out_size, pass_needs, plane_tile, pow2, splits, tl, triton)

if triton is not None:

    # Layout of the forward and input-gradient kernels: a program owns a tile of PL (image,
    # channel) planes x R rows x WP (padded) columns.  Each tap's row offsets (R values), column
    # offsets (WP values) and weights (PL values) are computed once per tile and shared by the
    # other dims: per tap and element that leaves an add, a mask, a load and a multiply-add.  (A
    # flat element layout spent more on index arithmetic and per-element weight gathers than on
    # the loads.)  Small planes (8x8) are stacked PL to a tile so that tiles stay ~512 pixels.

    @triton.jit
    def _fwd_kernel(x_ptr, w_ptr, y_ptr, NC, C, H, W, HO, WO, K: tl.constexpr, S: tl.constexpr,
                    P: tl.constexpr, D: tl.constexpr, PL: tl.constexpr, R: tl.constexpr, WP: tl.constexpr):
        plane = tl.program_id(0) * PL + tl.arange(0, PL)
        plane_ok = plane < NC
        c = plane % C
        oh = tl.program_id(1) * R + tl.arange(0, R)
        ow = tl.arange(0, WP)
        x_planes = (plane * (H * W))[:, None, None]
        acc = tl.zeros([PL, R, WP], dtype=tl.float32)
        for a in tl.static_range(K):
            ih = oh * S - P + a * D
            row_ok = (oh < HO) & (ih >= 0) & (ih < H)
            for b in tl.static_range(K):
                iw = ow * S - P + b * D
                col_ok = (ow < WO) & (iw >= 0) & (iw < W)
                ok = plane_ok[:, None, None] & (row_ok[:, None] & col_ok[None, :])[None, :, :]
                xv = tl.load(x_ptr + x_planes + (ih[:, None] * W + iw[None, :])[None, :, :], mask=ok, other=0.0)
                wv = tl.load(w_ptr + c * (K * K) + (a * K + b), mask=plane_ok, other=0.0).to(tl.float32)
                acc += xv.to(tl.float32) * wv[:, None, None]
        out = (plane * (HO * WO))[:, None, None] + (oh[:, None] * WO + ow[None, :])[None, :, :]
        ok = plane_ok[:, None, None] & ((oh < HO)[:, None] & (ow < WO)[None, :])[None, :, :]
        tl.store(y_ptr + out, acc.to(y_ptr.dtype.element_ty), mask=ok)

    @triton.jit
    def _bwd_input_kernel(gy_ptr, w_ptr, gx_ptr, NC, C, H, W, HO, WO, K: tl.constexpr, S: tl.constexpr,
                          P: tl.constexpr, D: tl.constexpr, PL: tl.constexpr, R: tl.constexpr,
                          WP: tl.constexpr):
        plane = tl.program_id(0) * PL + tl.arange(0, PL)
        plane_ok = plane < NC
        c = plane % C
        ih = tl.program_id(1) * R + tl.arange(0, R)
        iw = tl.arange(0, WP)
        gy_planes = (plane * (HO * WO))[:, None, None]
        acc = tl.zeros([PL, R, WP], dtype=tl.float32)
        for a in tl.static_range(K):
            th = ih + P - a * D  # = oh * S for the output row this tap came from
            oh = th // S
            row_ok = (ih < H) & (th >= 0) & (oh < HO)
            if S > 1:
                row_ok = row_ok & (th % S == 0)
            for b in tl.static_range(K):
                tw = iw + P - b * D
                ow = tw // S
                col_ok = (iw < W) & (tw >= 0) & (ow < WO)
                if S > 1:
                    col_ok = col_ok & (tw % S == 0)
                ok = plane_ok[:, None, None] & (row_ok[:, None] & col_ok[None, :])[None, :, :]
                g = tl.load(gy_ptr + gy_planes + (oh[:, None] * WO + ow[None, :])[None, :, :], mask=ok, other=0.0)
                wv = tl.load(w_ptr + c * (K * K) + (a * K + b), mask=plane_ok, other=0.0).to(tl.float32)
                acc += g.to(tl.float32) * wv[:, None, None]
        out = (plane * (H * W))[:, None, None] + (ih[:, None] * W + iw[None, :])[None, :, :]
        ok = plane_ok[:, None, None] & ((ih < H)[:, None] & (iw < W)[None, :])[None, :, :]
        tl.store(gx_ptr + out, acc.to(gx_ptr.dtype.element_ty), mask=ok)

    @triton.jit
    def _bwd_weight_kernel(x_ptr, gy_ptr, part_ptr, span, N, C, H, W, HO, WO, K: tl.constexpr,
                           S: tl.constexpr, P: tl.constexpr, D: tl.constexpr, TAPS: tl.constexpr,
                           R: tl.constexpr, WP: tl.constexpr):
        """Tiles of R output rows (of any image) x WP columns of one channel; all K*K tap sums stay
        in registers, so the input and the output gradient are each read once."""
        c = tl.program_id(0)
        split = tl.program_id(1)
        taps = tl.arange(0, TAPS)
        tap_live = taps < K * K
        ow = tl.arange(0, WP)
        iw = ow[None, :] * S - P + (taps % K)[:, None] * D                       # (TAPS, WP)
        col_ok = tap_live[:, None] & (ow[None, :] < WO) & (iw >= 0) & (iw < W)
        rows_total = N * HO
        start = split * span
        stop = tl.minimum(start + span, rows_total)
        acc = tl.zeros([TAPS, R, WP], dtype=tl.float32)
        for r0 in range(start, stop, R):
            rows = r0 + tl.arange(0, R)
            live = rows < stop
            n = rows // HO
            oh = rows % HO
            g = tl.load(gy_ptr + ((n * C + c) * HO + oh)[:, None] * WO + ow[None, :],
                        mask=live[:, None] & (ow[None, :] < WO), other=0.0).to(tl.float32)  # (R, WP)
            ih = oh[None, :] * S - P + (taps // K)[:, None] * D                  # (TAPS, R)
            row_ok = live[None, :] & (ih >= 0) & (ih < H)
            row_off = ((n * C + c) * H)[None, :] * W + ih * W                    # (TAPS, R)
            xv = tl.load(x_ptr + row_off[:, :, None] + iw[:, None, :],
                         mask=row_ok[:, :, None] & col_ok[:, None, :], other=0.0)
            acc += xv.to(tl.float32) * g[None, :, :]
        tl.store(part_ptr + (split * C + c) * TAPS + taps, tl.sum(tl.sum(acc, axis=2), axis=1))


_TILE = 512        # output pixels per program of the forward and input-gradient kernels
_WTILE = 128       # output pixels per tile of the weight-gradient kernel (rows x padded width)


#: strided forward convs keep the native kernel: on the H200 the Triton forward took 103 us where
#: the native one took 18 us for the reduction cell's stride-2 5x5 (256 x 16 x 32 x 32); the Triton
#: input and weight gradients of that conv were faster (58 vs 89 us, 29 vs 63 us) and are kept
#: (set per run with ``runtime.kernel_switches.native_strided_depthwise_forward``: nas_cli/runtime/switches.py)
NATIVE_STRIDED_FORWARD = True


def triton_forward(x: Tensor, w: Tensor, k: int, s: int, p: int, d: int) -> Tensor:
    """The forward kernel alone (any stride; :func:`_conv` routes strided convs to ``F.conv2d``)."""
    n, c, h, wd = x.shape
    y = torch.empty((n, c, out_size(h, k, s, p, d), out_size(wd, k, s, p, d)), device=x.device, dtype=x.dtype)
    planes, rows, wp, warps = plane_tile(y.shape[2], y.shape[3], _TILE)
    grid = ((n * c + planes - 1) // planes, (y.shape[2] + rows - 1) // rows)
    _fwd_kernel[grid](x, w, y, n * c, c, h, wd, y.shape[2], y.shape[3], k, s, p, d, PL=planes, R=rows, WP=wp,
                      num_warps=warps)
    return y


# The kernels are wrapped as custom operators (not a bare autograd.Function) so that
# ``torch.compile`` treats them as opaque calls and CUDA-graph capture records their launches.
@torch.library.custom_op("nas_cli::depthwise_conv", mutates_args=())
def _conv(x: Tensor, w: Tensor, k: int, s: int, p: int, d: int) -> Tensor:
    if s > 1 and NATIVE_STRIDED_FORWARD:
        # contiguous, as the fake says: a channels_last model's (C, 1, k, k) weight has strides that
        # are both layouts at once, and cuDNN then returns a channels_last output
        return F.conv2d(x, w.to(x.dtype), None, s, p, d, x.shape[1]).contiguous()
    return triton_forward(x, w, k, s, p, d)


@_conv.register_fake
def _conv_fake(x: Tensor, w: Tensor, k: int, s: int, p: int, d: int) -> Tensor:
    n, c, h, wd = x.shape
    return x.new_empty((n, c, out_size(h, k, s, p, d), out_size(wd, k, s, p, d)))


@torch.library.custom_op("nas_cli::depthwise_conv_grad_input", mutates_args=())
def _grad_input(gy: Tensor, x: Tensor, w: Tensor, k: int, s: int, p: int, d: int) -> Tensor:
    n, c, h, wd = x.shape
    gy = gy.contiguous()
    gx = torch.empty_like(x, memory_format=torch.contiguous_format)
    planes, rows, wp, warps = plane_tile(h, wd, _TILE)
    grid = ((n * c + planes - 1) // planes, (h + rows - 1) // rows)
    _bwd_input_kernel[grid](gy, w, gx, n * c, c, h, wd, gy.shape[2], gy.shape[3], k, s, p, d, PL=planes, R=rows,
                            WP=wp, num_warps=warps)
    return gx


@_grad_input.register_fake
def _grad_input_fake(gy: Tensor, x: Tensor, w: Tensor, k: int, s: int, p: int, d: int) -> Tensor:
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.custom_op("nas_cli::depthwise_conv_grad_weight", mutates_args=())
def _grad_weight(gy: Tensor, x: Tensor, w: Tensor, k: int, s: int, p: int, d: int) -> Tensor:
    n, c, h, wd = x.shape
    gy = gy.contiguous()
    taps = pow2(k * k)
    wp = pow2(gy.shape[3])
    rows = max(1, _WTILE // wp)
    slices, per = splits(x, c, n * gy.shape[2], rows)
    part = torch.empty((slices, c, taps), device=x.device, dtype=torch.float32)
    _bwd_weight_kernel[(c, slices)](x, gy, part, per, n, c, h, wd, gy.shape[2], gy.shape[3], k, s, p, d,
                                    TAPS=taps, R=rows, WP=wp)
    # contiguous, as the fake says: the tap slice of the padded sums is a strided view, and
    # torch.compile checks real strides against the fake ones
    return part.sum(0)[:, : k * k].reshape(w.shape).to(w.dtype).contiguous()


@_grad_weight.register_fake
def _grad_weight_fake(gy: Tensor, x: Tensor, w: Tensor, k: int, s: int, p: int, d: int) -> Tensor:
    return torch.empty_like(w, memory_format=torch.contiguous_format)


def _setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    x, w, *geom = inputs
    ctx.save_for_backward(x, w)
    ctx.geom = geom
    ctx.nodes = (x.grad_fn, w.grad_fn)  # which gradients a backward pass needs (pass_needs)


def _backward(ctx: Any, gy: Tensor) -> tuple[Tensor | None, ...]:
    x, w = ctx.saved_tensors
    gx = _grad_input(gy, x, w, *ctx.geom) if pass_needs(ctx, 0, ctx.nodes[0]) else None
    gw = _grad_weight(gy, x, w, *ctx.geom) if pass_needs(ctx, 1, ctx.nodes[1]) else None
    return gx, gw, None, None, None, None


_conv.register_autograd(_backward, setup_context=_setup)


def _uniform(value: Any) -> int | None:
    """A square/symmetric conv setting as one int (``None`` if the two dims differ)."""
    if isinstance(value, int):
        return value
    return int(value[0]) if len(value) == 2 and value[0] == value[1] else None


def supported(x: Tensor, weight: Tensor, stride: Any, padding: Any, dilation: Any) -> bool:
    """Whether the Triton path computes this conv (else the caller keeps ``F.conv2d``)."""
    c = x.shape[1] if x.dim() == 4 else -1
    return (triton is not None and x.dim() == 4 and x.is_contiguous() and weight.shape[0] == c
            and weight.shape[1] == 1 and weight.shape[2] == weight.shape[3]
            and None not in (_uniform(stride), _uniform(padding), _uniform(dilation))
            and x.dtype in (torch.float32, torch.bfloat16, torch.float16)
            and available(x.device)
            and x.numel() < 2**31)


def depthwise_conv2d(x: Tensor, weight: Tensor, stride: Any = 1, padding: Any = 0, dilation: Any = 1) -> Tensor:
    """Depthwise ``F.conv2d`` (``groups = channels``, no bias) through the Triton kernels.

    Under CUDA autocast the input is cast to the autocast dtype (the output then has it, as with
    ``F.conv2d``); the weight is read in its own dtype, and its gradient is accumulated in fp32 and
    returned in that dtype.  Falls back to ``F.conv2d`` for anything :func:`supported` rejects.
    """
    if not supported(x, weight, stride, padding, dilation):
        return F.conv2d(x, weight, None, stride, padding, dilation, x.shape[1])
    return _conv(autocast_input(x), as_graph_input(weight.contiguous()), int(weight.shape[2]), _uniform(stride),  # type: ignore[arg-type]
                 _uniform(padding), _uniform(dilation))


def is_depthwise(conv: nn.Conv2d) -> bool:
    """A bias-free, zero-padded conv with one filter per input channel (what the kernels compute)."""
    return (conv.groups == conv.in_channels == conv.out_channels and conv.bias is None
            and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
            and conv.kernel_size[0] == conv.kernel_size[1])


#: How the ``triton`` setting runs a channels_last input's depthwise conv (:func:`channels_last_route`):
#:
#: * ``cudnn`` -- cuDNN's NHWC kernels, no conversion;
#: * ``nchw`` -- convert to NCHW, run the NCHW Triton kernels here, convert back (a copy each way);
#: * ``nhwc`` -- the NHWC Triton kernels of :mod:`nas_cli.spaces.depthwise_nhwc`, every direction;
#: * ``nhwc_wgrad`` -- cuDNN's NHWC forward and input gradient, the NHWC Triton weight gradient.
CHANNELS_LAST_ROUTES = ("cudnn", "nchw", "nhwc", "nhwc_wgrad")
#: ``measured`` (the rule below) or one route forced wherever it can run (benchmarks/eval_convs.py)
channels_last_policy = "measured"
#: Undilated stride-1 convs with output planes of at most this many pixels take ``nhwc_wgrad``.
#: The rule below is the per-conv optimum of ``benchmarks/eval_convs.py --routes`` (H200, 2026-12-02,
#: batch 128, evaluation network; us of forward + both gradients per route, cudnn / nchw / nhwc /
#: nhwc_wgrad): 3x3 at 72x16x16 33.6 / 130.9 / 81.9 / 60.8; 3x3 at 144x8x8 84.9 / 73.6 / 28.6 / 26.6;
#: 3x3 at 36x32x32 57.5 / 231.9 / 151.4 / 108.2; 5x5 at 144x8x8 166.0 / 108.7 / 55.2 / 48.3; dilated
#: 3x3 at 72x16x16 279.5 / 112.4 / 86.8 / 159.2, at 36x32x32 803.8 / 208.4 / 150.7 / 287.7, at
#: 144x8x8 132.0 / 74.0 / 28.8 / 88.4; stride-2 3x3 at 144x16x16 57.6 / 114.4 (the NHWC kernels are
#: stride-1 only).  Summed over the network's depthwise convs: cudnn 20.5 ms, nchw 31.8, nhwc 20.1,
#: nhwc_wgrad 17.4, this rule 10.1 (before the stride-2 and large dilated cases were measured, 10.6).
#:
#: In bf16 (autocast, or a bf16 input) cuDNN's NHWC kernels are much faster at the undilated convs, so
#: only the dilated ones leave cuDNN (``eval_convs.py --routes --bf16``, H200, 2026-12-03, same order
#: and units): 3x3 at 72x16x16 32.8 / 120.0 / 85.0 / 67.5; 3x3 at 144x8x8 23.6 / 71.2 / 28.5 / 31.6;
#: 3x3 at 36x32x32 63.0 / 187.6 / 166.7 / 124.7; 5x5 at 144x8x8 35.1 / 110.4 / 52.4 / 47.5; dilated 3x3
#: at 72x16x16 236.5 / 106.7 / 83.1 / 160.5, at 144x8x8 114.7 / 70.6 / 28.4 / 83.0, at 36x32x32
#: 452.8 / 176.1 / 163.1 / 282.1.  Summed: cudnn 13.47 ms, nchw 27.95, nhwc 20.94, nhwc_wgrad 18.73, the
#: fp32 rule 10.59, the per-conv best 10.00 (what this rule picks but for one stride-2 5x5 conv).
SMALL_PLANE = 64


def channels_last_route(x: Tensor, weight: Tensor, k: int, s: int, p: int, d: int) -> str | None:
    """The route (:data:`CHANNELS_LAST_ROUTES`) of a ``triton`` depthwise conv with input ``x``;
    None when ``x`` is not channels_last (the NCHW kernels run it directly)."""
    if not nhwc_only(x):
        return None
    can_nhwc = nhwc.supported(x, weight, s, p, d)
    policy = channels_last_policy
    if policy in ("cudnn", "nchw") or (policy in ("nhwc", "nhwc_wgrad") and can_nhwc):
        return policy
    if d > 1:
        # cuDNN's NHWC kernels were slowest for dilated convs; strided dilated ones (not in the
        # measured network) keep the NCHW kernels
        return "nhwc" if can_nhwc else "nchw"
    if compute_dtype(x) != torch.float32:
        return "cudnn"
    if can_nhwc and out_size(x.shape[2], k, s, p, d) * out_size(x.shape[3], k, s, p, d) <= SMALL_PLANE:
        return "nhwc_wgrad"
    return "cudnn"


class DepthwiseConv2d(nn.Conv2d):
    """A depthwise ``nn.Conv2d`` whose kernels ``impl`` chooses (same parameters and state_dict).

    ``triton`` on a channels_last input picks a route per conv (:func:`channels_last_route`): cuDNN's
    NHWC kernels where they were measured fast, the NCHW Triton kernels behind a layout conversion
    each way, or the NHWC Triton kernels (all directions, or only the weight gradient).
    """

    impl: str = "native"

    def forward(self, x: Tensor) -> Tensor:
        if self.impl == "triton":
            k, s, p, d = self.kernel_size[0], _uniform(self.stride), _uniform(self.padding), _uniform(self.dilation)
            if None in (s, p, d):
                return super().forward(x)
            route = channels_last_route(x, self.weight, k, s, p, d)  # type: ignore[arg-type]
            if route == "cudnn":
                return super().forward(x)
            if route in ("nhwc", "nhwc_wgrad"):
                return nhwc.depthwise_conv2d_nhwc(x, self.weight, p, d, native_gather=route == "nhwc_wgrad")  # type: ignore[arg-type]
            if route == "nchw":
                y = depthwise_conv2d(x.contiguous(), self.weight, self.stride, self.padding, self.dilation)
                return y.contiguous(memory_format=torch.channels_last)
            return depthwise_conv2d(x, self.weight, self.stride, self.padding, self.dilation)
        return super().forward(x)


def use_depthwise_impl(model: nn.Module, impl: str) -> int:
    """Run every depthwise conv of ``model`` with ``impl`` (``native`` or ``triton``); returns how many.

    Plain depthwise ``nn.Conv2d`` modules are switched in place to :class:`DepthwiseConv2d`; fused
    stages that stack depthwise convs (``supports_depthwise_impl``) get the setting as an attribute,
    and so do the fused pooling stages (the stride-1 3x3 average pool: ``spaces/avgpool.py``; max pools:
    ``spaces/maxpool.py``).
    """
    check_impl(impl, "depthwise")
    count = 0
    for m in model.modules():
        if type(m) in (nn.Conv2d, DepthwiseConv2d) and is_depthwise(m):  # type: ignore[arg-type]
            m.__class__ = DepthwiseConv2d
            m.impl = impl  # type: ignore[assignment]
            count += 1
        elif getattr(m, "supports_depthwise_impl", False):
            m.depthwise_impl = impl
            count += 1
    return count
