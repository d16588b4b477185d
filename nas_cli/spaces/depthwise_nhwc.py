"""Stride-1 depthwise convolutions on channels_last tensors as Triton kernels.

Why: the compiled evaluation network runs channels_last (``runtime.channels_last=auto``), and there
cuDNN's NHWC depthwise kernels are fast for most shapes but slow for some.  Measured on the H200
(2026-12-02, batch 128, ``benchmarks/eval_convs.py --nhwc``, us forward / input gradient / weight
gradient, cuDNN NHWC vs these kernels): 3x3 at 144x8x8 5.3/5.6/74.6 vs 6.4/6.5/16.4; 5x5 at 144x8x8
11.9/11.9/143.4 vs 15.1/15.3/22.7; dilated 3x3 at 72x16x16 72.9/35.1/143.8 vs 18.1/18.0/46.0; but 3x3
at 36x32x32 14.8/16.6/22.9 vs 37.4/37.2/74.0.  So :func:`nas_cli.spaces.depthwise.channels_last_route`
uses them only where they win: every direction of small dilated convs, and the weight gradient alone
(``native_gather``: cuDNN keeps the forward and input gradient) of small undilated ones.  Running them
for every stride-1 conv made the evaluation step slower (0.0542 s against 0.0451 s, same call).

Layout: one image row (n, h) of an NHWC tensor is W*C contiguous values, and a horizontal tap shift
of ``dw`` pixels is a shift of ``dw*C`` values in that row.  So a program owns a block of the
flattened (w, c) row positions -- every load is contiguous whatever C is; the evaluation network has
W*C = 1152 at all three resolutions -- and each position's channel is ``position % C``.

* forward and input gradient (the same gather with the taps mirrored): a tile of R rows x BLOCK
  positions, the K*K taps unrolled, the weights gathered once per tile and tap;
* weight gradient: per program a block of positions and a slice of rows, all K*K tap sums of every
  position in registers (``TAPS`` = K*K padded to a power of two), the output gradient read once;
  the per-position sums are then added over slices and over the positions of each channel, in a fixed
  order (deterministic, no atomics).

Only stride 1 (strided convs keep cuDNN's NHWC kernels or the NCHW routing), square kernels,
symmetric padding, no bias, channels_last-contiguous fp32/bf16/fp16 inputs.  Accumulation is fp32.
Checked against ``F.conv2d`` in float64 under the Triton interpreter and on CUDA
(``tests/test_depthwise.py``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from nas_cli.spaces.triton_support import (as_graph_input, autocast_input, available, nhwc_only, out_size,
                                           pass_needs, pow2, sm_count, tl, triton)

if triton is not None:

    @triton.jit
    def _gather_kernel(x_ptr, w_ptr, y_ptr, ROWS, H, W, C, HO, WO, K: tl.constexpr, P: tl.constexpr,
                       D: tl.constexpr, SIGN: tl.constexpr, R: tl.constexpr, BLOCK: tl.constexpr):
        """y[n, oh, ow, c] = sum_ab x[n, oh + SIGN*(a*D - P), ow + SIGN*(b*D - P), c] * w[c, a, b]; SIGN = +1
        for the forward, -1 for the input gradient (x is then the output gradient, y the input's)."""
        f = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        f_ok = f < WO * C
        ow = f // C
        c = f % C
        rows = tl.program_id(1) * R + tl.arange(0, R)
        row_ok = rows < ROWS
        n = rows // HO
        oh = rows % HO
        acc = tl.zeros([R, BLOCK], dtype=tl.float32)
        for a in tl.static_range(K):
            ih = oh + SIGN * (a * D - P)
            r_ok = row_ok & (ih >= 0) & (ih < H)
            r_base = (n * H + ih) * (W * C)
            for b in tl.static_range(K):
                iw = ow + SIGN * (b * D - P)
                c_ok = f_ok & (iw >= 0) & (iw < W)
                wv = tl.load(w_ptr + c * (K * K) + (a * K + b), mask=f_ok, other=0.0).to(tl.float32)
                xv = tl.load(x_ptr + r_base[:, None] + (iw * C + c)[None, :], mask=r_ok[:, None] & c_ok[None, :],
                             other=0.0)
                acc += xv.to(tl.float32) * wv[None, :]
        out = (rows * (WO * C))[:, None] + f[None, :]
        tl.store(y_ptr + out, acc.to(y_ptr.dtype.element_ty), mask=row_ok[:, None] & f_ok[None, :])

    @triton.jit
    def _weight_kernel(x_ptr, gy_ptr, part_ptr, ROWS, span, H, W, C, HO, WO, K: tl.constexpr, P: tl.constexpr,
                       D: tl.constexpr, TAPS: tl.constexpr, BLOCK: tl.constexpr):
        """part[slice, tap, f] = sum over the slice's output rows of gy[row, f] * x[tap-shifted row, f], for
        the K*K live taps (the padding taps up to TAPS are not stored)."""
        f = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        f_ok = f < WO * C
        ow = f // C
        c = f % C
        taps = tl.arange(0, TAPS)
        live = taps < K * K
        iw = ow[None, :] + ((taps % K) * D - P)[:, None]                          # (TAPS, BLOCK)
        col_ok = live[:, None] & f_ok[None, :] & (iw >= 0) & (iw < W)
        x_col = iw * C + c[None, :]
        start = tl.program_id(1) * span
        stop = tl.minimum(start + span, ROWS)
        acc = tl.zeros([TAPS, BLOCK], dtype=tl.float32)
        for r in range(start, stop):
            n = r // HO
            ih = (r % HO) + (taps // K) * D - P                                   # (TAPS,)
            r_ok = (ih >= 0) & (ih < H)
            g = tl.load(gy_ptr + r * (WO * C) + f, mask=f_ok, other=0.0).to(tl.float32)
            xv = tl.load(x_ptr + ((n * H + ih) * (W * C))[:, None] + x_col, mask=r_ok[:, None] & col_ok, other=0.0)
            acc += xv.to(tl.float32) * g[None, :]
        tl.store(part_ptr + (tl.program_id(1) * (K * K) + taps)[:, None] * (WO * C) + f[None, :], acc,
                 mask=live[:, None] & f_ok[None, :])


_BLOCK = 128      # flattened (w, c) row positions per program
_ROWS = 4         # output rows per forward / input-gradient program
#: weight gradient: slices of rows per position block, as programs per SM.  H200 (2026-12-02, batch
#: 128, benchmarks/eval_convs.py --nhwc, us at 1/2/4/8): 3x3 at 144x8x8 28.4/20.4/18.0/16.4, 5x5 at
#: 144x8x8 38.9/26.6/23.0/22.7, dilated 3x3 at 72x16x16 86.1/57.6/46.0/46.0
_PROGRAMS_PER_SM = 8


def _nhwc(t: Tensor) -> Tensor:
    return t.contiguous(memory_format=torch.channels_last)


def _gather(x: Tensor, w: Tensor, k: int, p: int, d: int, out_hw: tuple[int, int], flip: bool) -> Tensor:
    n, c, h, wd = x.shape
    ho, wo = out_hw
    y = torch.empty((n, c, ho, wo), device=x.device, dtype=x.dtype, memory_format=torch.channels_last)
    grid = (triton.cdiv(wo * c, _BLOCK), triton.cdiv(n * ho, _ROWS))
    _gather_kernel[grid](x, w, y, n * ho, h, wd, c, ho, wo, k, p, d, -1 if flip else 1, R=_ROWS, BLOCK=_BLOCK,
                         num_warps=4)
    return y


# custom operators (opaque to torch.compile, recorded by CUDA-graph capture), as in spaces/depthwise.py
# ``native_gather``: the forward and the input gradient run cuDNN's NHWC kernels (measured faster
# than the gather kernel at some shapes) and only the weight gradient runs here
@torch.library.custom_op("nas_cli::depthwise_conv_nhwc", mutates_args=())
def _conv(x: Tensor, w: Tensor, k: int, p: int, d: int, native_gather: bool) -> Tensor:
    if native_gather:
        # channels_last, as the fake says, whatever layout cuDNN picks for the ambiguous (C, 1, k, k) weight
        return _nhwc(F.conv2d(x, w.to(x.dtype), None, 1, p, d, x.shape[1]))
    return _gather(x, w, k, p, d, (out_size(x.shape[2], k, 1, p, d), out_size(x.shape[3], k, 1, p, d)), False)


@_conv.register_fake
def _conv_fake(x: Tensor, w: Tensor, k: int, p: int, d: int, native_gather: bool) -> Tensor:
    n, c, h, wd = x.shape
    return torch.empty((n, c, out_size(h, k, 1, p, d), out_size(wd, k, 1, p, d)), device=x.device, dtype=x.dtype,
                       memory_format=torch.channels_last)


@torch.library.custom_op("nas_cli::depthwise_conv_nhwc_grad_input", mutates_args=())
def _grad_input(gy: Tensor, x: Tensor, w: Tensor, k: int, p: int, d: int, native_gather: bool) -> Tensor:
    if native_gather:
        gx = torch.ops.aten.convolution_backward(_nhwc(gy), x, w.to(x.dtype), None, [1, 1], [p, p], [d, d], False,
                                                 [0, 0], x.shape[1], [True, False, False])[0]
        return _nhwc(gx)
    # stride 1: the input gradient is the output gradient convolved with the mirrored taps
    return _gather(_nhwc(gy), w, k, p, d, (x.shape[2], x.shape[3]), True)


@_grad_input.register_fake
def _grad_input_fake(gy: Tensor, x: Tensor, w: Tensor, k: int, p: int, d: int, native_gather: bool) -> Tensor:
    return torch.empty(x.shape, device=x.device, dtype=x.dtype, memory_format=torch.channels_last)


@torch.library.custom_op("nas_cli::depthwise_conv_nhwc_grad_weight", mutates_args=())
def _grad_weight(gy: Tensor, x: Tensor, w: Tensor, k: int, p: int, d: int, native_gather: bool) -> Tensor:
    gy = _nhwc(gy)
    n, c, h, wd = x.shape
    ho, wo = gy.shape[2], gy.shape[3]
    taps = pow2(k * k)
    blocks = triton.cdiv(wo * c, _BLOCK)
    slices = max(1, min(n * ho, (_PROGRAMS_PER_SM * sm_count(x) + blocks - 1) // blocks))
    span = triton.cdiv(n * ho, slices)
    slices = triton.cdiv(n * ho, span)
    part = torch.empty((slices, k * k, wo * c), device=x.device, dtype=torch.float32)
    _weight_kernel[(blocks, slices)](x, gy, part, n * ho, span, h, wd, c, ho, wo, k, p, d, TAPS=taps, BLOCK=_BLOCK,
                                     num_warps=4)
    return _finish_weight_grad(part.view(slices, k * k, wo, c), k, w.dtype)


#: the weight gradient's per-slice sums added over the slices, then over each channel's positions straight
#: into the (C, 1, k, k) layout (two kernels); false: the second sum into a (taps, C) tensor and a
#: transposing copy (three kernels, the form before).  H200, twentieth session (``benchmarks/eval_convs.py
#: --wgrad-finish``, the whole op per call in a CUDA graph): 14.2 vs 15.5 us at 3x3 144x8x8, 70.6 vs 73.1 us
#: at dilated 3x3 36x32x32; 1.84 vs 1.96 ms summed over an evaluation step's 88 calls (the step itself was
#: not re-timed).  One reduction over both dimensions at once was slower (2.53 ms).  Both forms are
#: deterministic and add the same terms in the same order.
DIRECT_LAYOUT = True


def _finish_weight_grad(part: Tensor, k: int, dtype: torch.dtype) -> Tensor:
    """(slices, taps, W, C) float32 sums -> the (C, 1, k, k) weight gradient in ``dtype``.

    Why: the per-slice sums are small (about 5 MB at the evaluation network's shapes), so each kernel over
    them costs its launch and latency more than bandwidth; the profile of the compiled evaluation step
    (twentieth session) showed two sums and a copy after each of the 88 weight kernels per step."""
    kk, c = part.shape[1], part.shape[3]
    if not DIRECT_LAYOUT:
        return part.sum(0).sum(1).t().reshape(c, 1, k, k).to(dtype).contiguous()
    grad = torch.empty((c, 1, k, k), device=part.device, dtype=torch.float32)
    torch.sum(part.sum(0), dim=1, out=grad.view(c, kk).t())  # (taps, C) written through the transposed view
    return grad if dtype == torch.float32 else grad.to(dtype)


@_grad_weight.register_fake
def _grad_weight_fake(gy: Tensor, x: Tensor, w: Tensor, k: int, p: int, d: int, native_gather: bool) -> Tensor:
    return torch.empty((w.shape[0], 1, k, k), device=w.device, dtype=w.dtype)


def _setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    x, w, *geom = inputs
    ctx.save_for_backward(x, w)
    ctx.geom = geom
    ctx.nodes = (x.grad_fn, w.grad_fn)


def _backward(ctx: Any, gy: Tensor) -> tuple[Tensor | None, ...]:
    x, w = ctx.saved_tensors
    gx = _grad_input(gy, x, w, *ctx.geom) if pass_needs(ctx, 0, ctx.nodes[0]) else None
    gw = _grad_weight(gy, x, w, *ctx.geom) if pass_needs(ctx, 1, ctx.nodes[1]) else None
    return gx, gw, None, None, None, None


_conv.register_autograd(_backward, setup_context=_setup)


def supported(x: Tensor, weight: Tensor, stride: int, padding: int, dilation: int) -> bool:
    """Whether these kernels compute this conv: stride 1, a channels_last (not also NCHW-contiguous)
    4-d input with one square filter per channel."""
    return (triton is not None and stride == 1 and nhwc_only(x)
            and weight.shape[0] == x.shape[1] and weight.shape[1] == 1 and weight.shape[2] == weight.shape[3]
            and x.dtype in (torch.float32, torch.bfloat16, torch.float16) and available(x.device)
            and x.numel() < 2**31)


def depthwise_conv2d_nhwc(x: Tensor, weight: Tensor, padding: int, dilation: int,
                          native_gather: bool = False) -> Tensor:
    """Stride-1 depthwise ``F.conv2d`` (no bias) of a channels_last input; the output is channels_last.
    ``native_gather``: cuDNN computes the forward and input gradient, these kernels the weight
    gradient.  The caller checks :func:`supported`."""
    w = as_graph_input(weight.contiguous(memory_format=torch.contiguous_format))
    return _conv(autocast_input(x), w, int(weight.shape[2]), int(padding), int(dilation), bool(native_gather))
