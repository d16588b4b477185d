"""Max pooling as Triton kernels (``ENABLED``; with ``runtime.depthwise=triton``, i.e. ``auto`` on CUDA).

Why: in the GAEA PC-DARTS search step's H200 profile (2026-12-02, fifth session) PyTorch's max-pool
kernels were about 6 % of the device time (backward 43 us, forward 28 us per call at 256 x 4..20 x
32 x 32): the ``max_pool_3x3`` op of every edge group and the 2x2 max pool of the bypassed channels
on stride-2 edges.  PyTorch's forward writes an int64 index per output and its backward scatters
through those indices.

These kernels compute the same function with less traffic and no scatter:

* forward: tiles of planes x rows x columns (the layout of the depthwise kernels); each output keeps
  the first maximum of its window in row-major order, NaN winning as in PyTorch, and stores its
  window offset as one int8 (not an int64 input position);
* backward: a gather.  Each input position visits the (up to K*K) windows that contain it and adds
  the output gradient of those whose stored offset points at it -- deterministic, no atomics.

Same function as ``F.max_pool2d(x, k, s, p)`` (dilation 1, floor mode), including which input
receives the gradient on ties.  On CPU the kernels run only under Triton's interpreter.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from nas_cli.spaces.triton_support import available, out_size, plane_tile, tl, triton

#: whether the fused cells' max pools use these kernels (``runtime.depthwise=triton`` steps).  On
#: since the H200 GAEA PC-DARTS search step measured 0.0933 s with them against 0.0948 / 0.0962 s
#: without (peak 6.96 GB against 7.71 GB; benchmarks/pool_kernels.py, sixth session)
#: (set per run with ``runtime.kernel_switches.maxpool_kernels``: nas_cli/runtime/switches.py)
ENABLED = True

if triton is not None:

    @triton.jit
    def _fwd_kernel(x_ptr, y_ptr, idx_ptr, NC, H, W, HO, WO, K: tl.constexpr, S: tl.constexpr, P: tl.constexpr,
                    PL: tl.constexpr, R: tl.constexpr, WP: tl.constexpr):
        plane = tl.program_id(0) * PL + tl.arange(0, PL)
        plane_ok = plane < NC
        oh = tl.program_id(1) * R + tl.arange(0, R)
        ow = tl.arange(0, WP)
        x_planes = (plane.to(tl.int64) * (H * W))[:, None, None]
        best = tl.full([PL, R, WP], float("-inf"), dtype=tl.float32)
        idx = tl.full([PL, R, WP], -1, dtype=tl.int32)
        for a in tl.static_range(K):
            ih = oh * S - P + a
            row_ok = (oh < HO) & (ih >= 0) & (ih < H)
            for b in tl.static_range(K):
                iw = ow * S - P + b
                col_ok = (ow < WO) & (iw >= 0) & (iw < W)
                ok = plane_ok[:, None, None] & (row_ok[:, None] & col_ok[None, :])[None, :, :]
                xv = tl.load(x_ptr + x_planes + (ih[:, None] * W + iw[None, :])[None, :, :], mask=ok,
                             other=float("-inf")).to(tl.float32)
                # PyTorch: the first valid tap, then any larger value or a NaN
                take = ok & ((idx < 0) | (xv > best) | (xv != xv))
                best = tl.where(take, xv, best)
                idx = tl.where(take, a * K + b, idx)
        out = (plane.to(tl.int64) * (HO * WO))[:, None, None] + (oh[:, None] * WO + ow[None, :])[None, :, :]
        ok = plane_ok[:, None, None] & ((oh < HO)[:, None] & (ow < WO)[None, :])[None, :, :]
        tl.store(y_ptr + out, best.to(y_ptr.dtype.element_ty), mask=ok)
        tl.store(idx_ptr + out, idx.to(tl.int8), mask=ok)

    @triton.jit
    def _bwd_kernel(gy_ptr, idx_ptr, gx_ptr, NC, H, W, HO, WO, K: tl.constexpr, S: tl.constexpr,
                    P: tl.constexpr, PL: tl.constexpr, R: tl.constexpr, WP: tl.constexpr):
        plane = tl.program_id(0) * PL + tl.arange(0, PL)
        plane_ok = plane < NC
        ih = tl.program_id(1) * R + tl.arange(0, R)
        iw = tl.arange(0, WP)
        o_planes = (plane.to(tl.int64) * (HO * WO))[:, None, None]
        acc = tl.zeros([PL, R, WP], dtype=tl.float32)
        for a in tl.static_range(K):
            th = ih + P - a  # = oh * S for the window whose tap a covers this row
            oh = th // S
            row_ok = (ih < H) & (th >= 0) & (oh < HO)
            if S > 1:
                row_ok = row_ok & (th % S == 0)
            for b in tl.static_range(K):
                tw = iw + P - b
                ow = tw // S
                col_ok = (iw < W) & (tw >= 0) & (ow < WO)
                if S > 1:
                    col_ok = col_ok & (tw % S == 0)
                ok = plane_ok[:, None, None] & (row_ok[:, None] & col_ok[None, :])[None, :, :]
                at = o_planes + (oh[:, None] * WO + ow[None, :])[None, :, :]
                hit = ok & (tl.load(idx_ptr + at, mask=ok, other=-1).to(tl.int32) == a * K + b)
                acc += tl.load(gy_ptr + at, mask=hit, other=0.0).to(tl.float32)
        out = (plane.to(tl.int64) * (H * W))[:, None, None] + (ih[:, None] * W + iw[None, :])[None, :, :]
        ok = plane_ok[:, None, None] & ((ih < H)[:, None] & (iw < W)[None, :])[None, :, :]
        tl.store(gx_ptr + out, acc.to(gx_ptr.dtype.element_ty), mask=ok)


_TILE = 512  # pixels per program


@torch.library.custom_op("nas_cli::max_pool", mutates_args=())
def _pool(x: Tensor, k: int, s: int, p: int) -> tuple[Tensor, Tensor]:
    n, c, h, w = x.shape
    ho, wo = out_size(h, k, s, p), out_size(w, k, s, p)
    y = torch.empty((n, c, ho, wo), device=x.device, dtype=x.dtype)
    idx = torch.empty((n, c, ho, wo), device=x.device, dtype=torch.int8)
    planes, rows, wp, warps = plane_tile(ho, wo, _TILE)
    grid = ((n * c + planes - 1) // planes, (ho + rows - 1) // rows)
    _fwd_kernel[grid](x, y, idx, n * c, h, w, ho, wo, k, s, p, PL=planes, R=rows, WP=wp, num_warps=warps)
    return y, idx


@_pool.register_fake
def _pool_fake(x: Tensor, k: int, s: int, p: int) -> tuple[Tensor, Tensor]:
    n, c, h, w = x.shape
    shape = (n, c, out_size(h, k, s, p), out_size(w, k, s, p))
    return x.new_empty(shape), x.new_empty(shape, dtype=torch.int8)


@torch.library.custom_op("nas_cli::max_pool_backward", mutates_args=())
def _pool_backward(gy: Tensor, idx: Tensor, h: int, w: int, k: int, s: int, p: int) -> Tensor:
    n, c, ho, wo = gy.shape
    gy = gy.contiguous()
    gx = torch.empty((n, c, h, w), device=gy.device, dtype=gy.dtype)
    planes, rows, wp, warps = plane_tile(h, w, _TILE)
    grid = ((n * c + planes - 1) // planes, (h + rows - 1) // rows)
    _bwd_kernel[grid](gy, idx, gx, n * c, h, w, ho, wo, k, s, p, PL=planes, R=rows, WP=wp, num_warps=warps)
    return gx


@_pool_backward.register_fake
def _pool_backward_fake(gy: Tensor, idx: Tensor, h: int, w: int, k: int, s: int, p: int) -> Tensor:
    return gy.new_empty((gy.shape[0], gy.shape[1], h, w))


def _setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
    x, k, s, p = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.set_materialize_grads(False)  # no zero-filled gradient for the indices
    ctx.save_for_backward(output[1])
    ctx.geometry = (x.shape[2], x.shape[3], k, s, p)


def _backward(ctx: Any, gy: Tensor | None, _gidx: Any) -> tuple[Tensor | None, ...]:
    if gy is None:  # grads are not materialised: the output took no gradient
        return None, None, None, None
    (idx,) = ctx.saved_tensors
    return _pool_backward(gy, idx, *ctx.geometry), None, None, None


_pool.register_autograd(_backward, setup_context=_setup)


def supported(x: Tensor, k: int, s: int, p: int) -> bool:
    """Whether the kernels compute this pool (else ``F.max_pool2d``)."""
    return (x.dim() == 4 and x.is_contiguous() and 1 <= k <= 11 and s >= 1
            and 0 <= p <= k // 2 and out_size(x.shape[2], k, s, p) > 0 and out_size(x.shape[3], k, s, p) > 0
            and x.dtype in (torch.float32, torch.bfloat16, torch.float16)
            and available(x.device) and x.numel() < 2**31)


def max_pool2d(x: Tensor, k: int, s: int, p: int = 0, impl: str = "triton") -> Tensor:
    """``F.max_pool2d(x, k, s, p)``; through the Triton kernels when ``impl`` (the caller's
    ``runtime.depthwise`` choice) is ``triton``, they are ``ENABLED`` and :func:`supported`."""
    if impl != "triton" or not ENABLED or not supported(x, k, s, p):
        return F.max_pool2d(x, k, s, p)
    return _pool(x, k, s, p)[0]
