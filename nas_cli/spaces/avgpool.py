"""The supernets' stride-1 3x3 average pool (``count_include_pad=False``) as Triton kernels.

Why: the pool used to run as an all-ones depthwise conv (the depthwise kernels) followed by a
broadcast multiplication with the reciprocal of each position's number of valid taps.  That is two
kernels per direction, and the multiplication is PyTorch's non-vectorised broadcast kernel: in the
NB201 GDAS step's H200 profile (ninth session) such elementwise kernels ran about 580 times per
step.  These kernels divide by the tap count where they sum, one kernel per direction:

* forward: ``y[o] = (sum of the valid taps around o) / count(o)``;
* backward (stride 1, so the window is symmetric): ``gx[i] = sum over the outputs o whose window
  holds i of gy[o] / count(o)``.

``count`` at row r of an H-row plane is ``min(r+1, H-1) - max(r-1, 0) + 1`` valid rows times the same
for columns.  Same function as ``F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)``; tiles of planes
x rows x columns as in the depthwise kernels.  On CPU the kernels run only under Triton's interpreter.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from nas_cli.spaces.triton_support import available, plane_tile, tl, triton

if triton is not None:

    @triton.jit
    def _count(r, n):
        """Valid taps of a 3-wide window centred at r on a line of n (1 to 3), as fp32."""
        return (tl.minimum(r + 1, n - 1) - tl.maximum(r - 1, 0) + 1).to(tl.float32)

    @triton.jit
    def _plane_tile(NC, H, W, PL: tl.constexpr, R: tl.constexpr, WP: tl.constexpr):
        """This program's tile of PL planes x R rows x WP columns of NC planes of H x W: (plane offsets,
        planes in range, rows, columns, offsets within a plane, pixels in range)."""
        plane = tl.program_id(0) * PL + tl.arange(0, PL)
        plane_ok = plane < NC
        oh = tl.program_id(1) * R + tl.arange(0, R)
        ow = tl.arange(0, WP)
        planes = (plane.to(tl.int64) * (H * W))[:, None, None]
        here = (oh[:, None] * W + ow[None, :])[None, :, :]
        ok = plane_ok[:, None, None] & ((oh < H)[:, None] & (ow < W)[None, :])[None, :, :]
        return planes, plane_ok, oh, ow, here, ok

    @triton.jit
    def _window_sum(src_ptr, planes, plane_ok, oh, ow, H, W, SCALE_TAPS: tl.constexpr, PL: tl.constexpr,
                    R: tl.constexpr, WP: tl.constexpr):
        """Σ over the valid taps of the 3x3 window around each (oh, ow) of src, each tap divided by its
        own count when SCALE_TAPS (the backward's form); fp32, shape (PL, R, WP)."""
        acc = tl.zeros([PL, R, WP], dtype=tl.float32)
        for a in tl.static_range(3):
            ih = oh - 1 + a
            row_ok = (oh < H) & (ih >= 0) & (ih < H)
            for b in tl.static_range(3):
                iw = ow - 1 + b
                col_ok = (ow < W) & (iw >= 0) & (iw < W)
                ok = plane_ok[:, None, None] & (row_ok[:, None] & col_ok[None, :])[None, :, :]
                v = tl.load(src_ptr + planes + (ih[:, None] * W + iw[None, :])[None, :, :], mask=ok,
                            other=0.0).to(tl.float32)
                if SCALE_TAPS:
                    v = v / (_count(ih, H)[:, None] * _count(iw, W)[None, :])[None, :, :]
                acc += v
        return acc

    @triton.jit
    def _avg3_kernel(src_ptr, dst_ptr, NC, H, W, BACKWARD: tl.constexpr, PL: tl.constexpr, R: tl.constexpr,
                     WP: tl.constexpr):
        """Forward: dst = window sum of src / count at the centre.  Backward: dst = window sum of
        src / count at each tap (src is the output gradient)."""
        planes, plane_ok, oh, ow, here, ok = _plane_tile(NC, H, W, PL, R, WP)
        acc = _window_sum(src_ptr, planes, plane_ok, oh, ow, H, W, BACKWARD, PL, R, WP)
        if not BACKWARD:
            acc = acc / (_count(oh, H)[:, None] * _count(ow, W)[None, :])[None, :, :]
        tl.store(dst_ptr + planes + here, acc.to(dst_ptr.dtype.element_ty), mask=ok)


_TILE = 512  # pixels per program, as the depthwise kernels


def _run(src: Tensor, backward: bool) -> Tensor:
    n, c, h, w = src.shape
    src = src.contiguous()  # (an output gradient may come strided)
    dst = torch.empty_like(src)
    planes, rows, wp, warps = plane_tile(h, w, _TILE)
    grid = ((n * c + planes - 1) // planes, (h + rows - 1) // rows)
    _avg3_kernel[grid](src, dst, n * c, h, w, BACKWARD=backward, PL=planes, R=rows, WP=wp, num_warps=warps)
    return dst


@torch.library.custom_op("nas_cli::avg_pool_3x3", mutates_args=())
def _pool(x: Tensor) -> Tensor:
    return _run(x, False)


@_pool.register_fake
def _pool_fake(x: Tensor) -> Tensor:
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.custom_op("nas_cli::avg_pool_3x3_backward", mutates_args=())
def _pool_backward(gy: Tensor) -> Tensor:
    return _run(gy, True)


@_pool_backward.register_fake
def _pool_backward_fake(gy: Tensor) -> Tensor:
    return torch.empty_like(gy, memory_format=torch.contiguous_format)


def _backward(ctx: Any, gy: Tensor) -> Tensor:
    return _pool_backward(gy)


_pool.register_autograd(_backward)


def supported(x: Tensor) -> bool:
    """Whether the kernels take ``x`` (NCHW-contiguous, float, on CUDA or under the interpreter)."""
    return (x.dim() == 4 and x.is_contiguous() and x.dtype in (torch.float32, torch.bfloat16, torch.float16) and x.numel() > 0
            and x.numel() < 2**31 and available(x.device))


def avg_pool_3x3(x: Tensor) -> Tensor:
    """``F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)``: the kernels where :func:`supported`
    allows, ``F.avg_pool2d`` otherwise."""
    if not supported(x):
        return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    return _pool(x)
