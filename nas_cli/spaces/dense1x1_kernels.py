"""Dense stride-1 1x1 convolutions on NHWC tensors as Triton GEMMs (``runtime.conv1x1=triton``).

Why: a channels_last 1x1 conv is the product of the (N*H*W, C_in) matrix that the activation already
is in memory with the (C_in, C_out) weight.  At the evaluation network's 36..576 channels these GEMMs
are memory-bound with a short inner dimension, and the kernels cuDNN picks on the H200 (Ampere-generation
TF32 GEMMs plus split-K reductions for the weight gradient) ran at about half the bandwidth bound in
the ninth session's profile (about 10.5 ms per step where reading and writing the tensors once per
direction takes about 5.4 ms: docs/speed.md).  These kernels read each activation tile once per
direction:

* forward and input gradient: one program per (BLOCK_M rows, BLOCK_N output channels) tile loops
  over the inner channels in BLOCK_K steps (``tl.dot``);
* weight gradient: one program per (output-channel block, input-channel block, slice of the rows)
  accumulates ``gy^T x`` over its rows; the per-slice partial sums are added in a fixed order
  afterwards (deterministic, no atomics).

Precision as the convs they replace: TF32 products where cuDNN may use them
(``torch.backends.cudnn.allow_tf32``), fp32 accumulation.  This first version is correct on the H200 but
about 3x slower than cuDNN over the network's 1x1 convs (41.3 ms against 12.3 ms per step,
``benchmarks/eval_convs.py --conv1x1``, 2026-12-03): ``auto`` never picks it.  It is the starting point
for a 1x1 kernel with the BatchNorm statistics in its epilogue, a fusion cuDNN does not offer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from nas_cli.spaces.triton_support import as_graph_input, available, pass_needs, pow2, splits, tl, triton

if triton is not None:

    @triton.jit
    def _gemm_kernel(a_ptr, b_ptr, c_ptr, M, K, N, b_sk, b_sn, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                     BLOCK_K: tl.constexpr, PRECISION: tl.constexpr):
        """c[m, n] = sum_k a[m, k] b[k, n]: a (M, K) and c (M, N) row-major, b addressed by strides."""
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        row_live = rows < M
        col_live = cols < N
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            k_live = ks < K
            a = tl.load(a_ptr + rows[:, None].to(tl.int64) * K + ks[None, :],
                        mask=row_live[:, None] & k_live[None, :], other=0.0)
            b = tl.load(b_ptr + ks[:, None] * b_sk + cols[None, :] * b_sn,
                        mask=k_live[:, None] & col_live[None, :], other=0.0)
            acc += tl.dot(a, b, input_precision=PRECISION)
        tl.store(c_ptr + rows[:, None].to(tl.int64) * N + cols[None, :], acc.to(c_ptr.dtype.element_ty),
                 mask=row_live[:, None] & col_live[None, :])

    @triton.jit
    def _wgrad_kernel(x_ptr, gy_ptr, part_ptr, M, K, N, span, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                      BLOCK_K: tl.constexpr, PRECISION: tl.constexpr):
        """part[s, n, k] = sum over slice s's rows m of gy[m, n] x[m, k] (x (M, K), gy (M, N) row-major)."""
        cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        ks = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
        split = tl.program_id(2)
        col_live = cols < N
        k_live = ks < K
        start = split * span
        stop = tl.minimum(start + span, M)
        acc = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
        for m0 in range(start, stop, BLOCK_M):
            rows = m0 + tl.arange(0, BLOCK_M)
            live = rows < stop
            g = tl.load(gy_ptr + rows[:, None].to(tl.int64) * N + cols[None, :],
                        mask=live[:, None] & col_live[None, :], other=0.0)
            x = tl.load(x_ptr + rows[:, None].to(tl.int64) * K + ks[None, :],
                        mask=live[:, None] & k_live[None, :], other=0.0)
            acc += tl.dot(tl.trans(g), x, input_precision=PRECISION)
        out = part_ptr + split * (N * K) + cols[:, None] * K + ks[None, :]
        tl.store(out, acc, mask=col_live[:, None] & k_live[None, :])


_BLOCK_M = 128


def _block(c: int) -> int:
    """A tile edge over ``c`` channels: 16..64 (``tl.dot`` needs at least 16)."""
    return max(16, min(64, pow2(c)))


def _precision(x: Tensor) -> str:
    """TF32 products where cuDNN's convolutions may use them (what these kernels replace)."""
    return "tf32" if x.is_cuda and torch.backends.cudnn.allow_tf32 else "ieee"


def nhwc_rows(t: Tensor) -> Tensor:
    """The (N*H*W, C) matrix a channels_last (N, C, H, W) tensor is in memory (a view; a copy for
    other layouts)."""
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])


def _nhwc_empty(n: int, c: int, h: int, w: int, like: Tensor) -> Tensor:
    return torch.empty((n, h, w, c), device=like.device, dtype=like.dtype).permute(0, 3, 1, 2)


def _gemm(a: Tensor, w: Tensor, transpose_w: bool, out: Tensor) -> None:
    """out (M, N) = a (M, K) @ W^T (forward: W is (N, K)) or a @ W (``transpose_w``: W is (K, N))."""
    m, k = a.shape
    n = out.shape[1]
    b_sk, b_sn = (w.shape[1], 1) if transpose_w else (1, w.shape[1])
    bn, bk = _block(n), _block(k)
    grid = (triton.cdiv(m, _BLOCK_M), triton.cdiv(n, bn))
    _gemm_kernel[grid](a, w, out, m, k, n, b_sk, b_sn, BLOCK_M=_BLOCK_M, BLOCK_N=bn, BLOCK_K=bk,
                       PRECISION=_precision(a))


@torch.library.custom_op("nas_cli::conv1x1_nhwc", mutates_args=())
def _conv(x: Tensor, w: Tensor) -> Tensor:
    n, _, h, wd = x.shape
    y = _nhwc_empty(n, w.shape[0], h, wd, x)
    _gemm(nhwc_rows(x), w.reshape(w.shape[0], -1), False, nhwc_rows(y))
    return y


@_conv.register_fake
def _conv_fake(x: Tensor, w: Tensor) -> Tensor:
    n, _, h, wd = x.shape
    return x.new_empty((n, h, wd, w.shape[0])).permute(0, 3, 1, 2)


@torch.library.custom_op("nas_cli::conv1x1_nhwc_grad_input", mutates_args=())
def _grad_input(gy: Tensor, w: Tensor) -> Tensor:
    n, _, h, wd = gy.shape
    gx = _nhwc_empty(n, w.shape[1], h, wd, gy)
    _gemm(nhwc_rows(gy.contiguous(memory_format=torch.channels_last)), w.reshape(w.shape[0], -1), True,
          nhwc_rows(gx))
    return gx


@_grad_input.register_fake
def _grad_input_fake(gy: Tensor, w: Tensor) -> Tensor:
    n, _, h, wd = gy.shape
    return gy.new_empty((n, h, wd, w.shape[1])).permute(0, 3, 1, 2)


def row_slices(x: Tensor, m: int, n: int, k: int) -> tuple[int, int]:
    """(rows per slice, slices) of the weight gradient over ``m`` rows: about 8 programs per SM over
    the (n, k) output tiles (:func:`~nas_cli.spaces.triton_support.splits`)."""
    slices, span = splits(x, -(-n // _block(n)) * -(-k // _block(k)), m, _BLOCK_M)
    return span, slices


@torch.library.custom_op("nas_cli::conv1x1_nhwc_grad_weight", mutates_args=())
def _grad_weight(gy: Tensor, x: Tensor, w: Tensor) -> Tensor:
    g, xr = nhwc_rows(gy.contiguous(memory_format=torch.channels_last)), nhwc_rows(x)
    m, k = xr.shape
    n = g.shape[1]
    bn, bk = _block(n), _block(k)
    span, slices = row_slices(x, m, n, k)
    part = torch.empty((slices, n, k), device=x.device, dtype=torch.float32)
    _wgrad_kernel[(triton.cdiv(n, bn), triton.cdiv(k, bk), slices)](
        xr, g, part, m, k, n, span, BLOCK_M=_BLOCK_M, BLOCK_N=bn, BLOCK_K=bk, PRECISION=_precision(x))
    return part.sum(0).to(w.dtype).reshape(w.shape).contiguous()


@_grad_weight.register_fake
def _grad_weight_fake(gy: Tensor, x: Tensor, w: Tensor) -> Tensor:
    return torch.empty_like(w, memory_format=torch.contiguous_format)


def _setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    x, w = inputs
    ctx.save_for_backward(x, w)
    ctx.nodes = (x.grad_fn, w.grad_fn)  # which gradients the running pass needs (pass_needs)


def _backward(ctx: Any, gy: Tensor) -> tuple[Tensor | None, ...]:
    x, w = ctx.saved_tensors
    gx = _grad_input(gy, w) if pass_needs(ctx, 0, ctx.nodes[0]) else None
    gw = _grad_weight(gy, x, w) if pass_needs(ctx, 1, ctx.nodes[1]) else None
    return gx, gw


_conv.register_autograd(_backward, setup_context=_setup)


def supported(x: Tensor, weight: Tensor) -> bool:
    """Whether the kernels compute this 1x1 conv: an fp32 channels_last input on a device Triton runs on."""
    return (triton is not None and x.dim() == 4 and x.dtype == torch.float32 and weight.dtype == torch.float32
            and x.permute(0, 2, 3, 1).is_contiguous() and weight.shape[2:] == (1, 1)
            and x.shape[1] == weight.shape[1] and available(x.device))


def conv1x1_nhwc(x: Tensor, weight: Tensor) -> Tensor:
    """``F.conv2d(x, weight)`` (1x1, stride 1, no bias, one group) through the kernels; the caller
    checks :func:`supported`.  The output is channels_last."""
    return _conv(x, as_graph_input(weight))  # type: ignore[no-any-return]
