"""The ops that read a fused NB201 source's input, ReLU, skip and 3x3 average pool, as one Triton kernel per direction.

Why: every source node x_j of the fused NB201 cell (``nb201_fused._Source``) feeds three consumers: the
ReLU in front of its merged conv, the skip row of its weighted sum and the average pool.  From separate
ops that is, per source, a ReLU and a pool kernel forward, and backward a ReLU gradient
(``threshold_backward``), a pool gradient and two additions with which the autograd engine sums the
three gradients of x_j: six kernels per source and step direction pair, about 540 per NB201 step (45
sources, two forward and two backward passes), each one a full pass over a 1-4 MB tensor plus a
microsecond between replayed kernels (the H200 profile of the eleventh session counted about 1,070
small elementwise kernels per GDAS step).

Here one kernel computes both outputs from one read of x_j:

* forward: ``r = relu(x)``, the centre tap, and ``p = avg_pool_3x3(x)`` (``count_include_pad=False``,
  the window sum divided by its valid taps), as in ``spaces/avgpool.py``;
* backward: ``gx = [r > 0] * g_r + g_s + Σ_{o ∋ i} g_p[o] / count(o)``: the ReLU gradient, the skip
  row's gradient and the pool gradient summed in registers.

The skip row is ``x`` itself: :class:`_SourceInputs` returns its input unchanged as a second output,
which autograd turns into a view of ``x`` whose gradient comes back to this function's backward instead
of being added to x_j's gradient by the engine.  Each output is optional (a source without a conv has no
ReLU, one without ``avg_pool_3x3`` no pool); gradients the pass does not produce are absent terms.

Same function as ``F.relu`` and ``F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)``; the ReLU gradient
passes where ``r > 0`` fails only for ``r <= 0``, as PyTorch's (a NaN passes its gradient).  The sum of
the three gradients is formed in another order than the engine's, so results agree to rounding, not bit
for bit.  On CPU the kernels run only under Triton's interpreter.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from nas_cli.spaces.triton_support import available, plane_tile, pow2, tl, triton

if triton is not None:
    from nas_cli.spaces.avgpool import _count, _plane_tile, _window_sum

    @triton.jit
    def _relu_offsets(planes, here, C, H, W, R_NHWC: tl.constexpr, PL: tl.constexpr):
        """Offsets of the tile's values in r (and its gradient): the tile's own NCHW offsets, or with
        R_NHWC (r channels_last) those in NHWC order; then the PL planes are PL consecutive channels
        of one sample (the grid's PL divides C), so the offsets run contiguously along the planes."""
        if R_NHWC:
            first = tl.program_id(0) * PL
            n = first // C
            c = (first - n * C) + tl.arange(0, PL)
            return n.to(tl.int64) * (C * H * W) + c[:, None, None] + here.to(tl.int64) * C
        return planes + here

    @triton.jit
    def _inputs_fwd_kernel(x_ptr, r_ptr, p_ptr, NC, C, H, W, NEED_R: tl.constexpr, NEED_P: tl.constexpr,
                           R_NHWC: tl.constexpr, PL: tl.constexpr, R: tl.constexpr, WP: tl.constexpr):
        """r = relu(x) and p = window sum of x / count at the centre, for a tile of planes x rows x columns
        of the NCHW x (r written NHWC with R_NHWC)."""
        planes, plane_ok, oh, ow, here, ok = _plane_tile(NC, H, W, PL, R, WP)
        if NEED_P:
            acc = _window_sum(x_ptr, planes, plane_ok, oh, ow, H, W, False, PL, R, WP)
            acc = acc / (_count(oh, H)[:, None] * _count(ow, W)[None, :])[None, :, :]
            tl.store(p_ptr + planes + here, acc.to(p_ptr.dtype.element_ty), mask=ok)
        if NEED_R:
            # the centre tap again: a cached read; ``x <= 0 -> 0`` keeps a NaN a NaN, as F.relu does
            v = tl.load(x_ptr + planes + here, mask=ok, other=0.0)
            at = _relu_offsets(planes, here, C, H, W, R_NHWC, PL)
            tl.store(r_ptr + at, tl.where(v <= 0, 0.0, v).to(r_ptr.dtype.element_ty), mask=ok)

    @triton.jit
    def _inputs_bwd_kernel(r_ptr, gr_ptr, gs_ptr, gp_ptr, gx_ptr, NC, C, H, W, HAS_GR: tl.constexpr,
                           HAS_GS: tl.constexpr, HAS_GP: tl.constexpr, R_NHWC: tl.constexpr, PL: tl.constexpr,
                           R: tl.constexpr, WP: tl.constexpr):
        """gx = [r > 0] g_r + g_s + window sum of g_p / count at each tap (the present terms only); r and
        g_r NHWC with R_NHWC."""
        planes, plane_ok, oh, ow, here, ok = _plane_tile(NC, H, W, PL, R, WP)
        if HAS_GP:
            acc = _window_sum(gp_ptr, planes, plane_ok, oh, ow, H, W, True, PL, R, WP)
        else:
            acc = tl.zeros([PL, R, WP], dtype=tl.float32)
        if HAS_GS:
            acc += tl.load(gs_ptr + planes + here, mask=ok, other=0.0).to(tl.float32)
        if HAS_GR:
            at = _relu_offsets(planes, here, C, H, W, R_NHWC, PL)
            rv = tl.load(r_ptr + at, mask=ok, other=0.0)
            gv = tl.load(gr_ptr + at, mask=ok, other=0.0).to(tl.float32)
            acc += tl.where(rv <= 0, 0.0, gv)
        tl.store(gx_ptr + planes + here, acc.to(gx_ptr.dtype.element_ty), mask=ok)


_TILE = 512  # pixels per program, as the pooling and depthwise kernels
#: whether the fused NB201 cell takes these kernels (with ``runtime.mixing=triton``); off, it runs the
#: separate ReLU and pool ops (``benchmarks/nb201_merge.py --flag source_inputs`` times both)
#: (set per run with ``runtime.kernel_switches.source_input_kernels``: nas_cli/runtime/switches.py)
ENABLED = True


#: channels per tile when r is NHWC: enough consecutive channels per pixel for whole memory sectors
_NHWC_PLANES = 16


def _grid(shape: Sequence[int], r_nhwc: bool = False) -> tuple[tuple[int, int], dict[str, int]]:
    """Tiles of planes x rows x columns.  With ``r_nhwc`` the planes of a tile are consecutive channels
    of one sample (a power of two dividing C, up to 16), so its NHWC ReLU values are runs of channels."""
    n, c, h, w = shape
    planes, rows, wp, warps = plane_tile(h, w, _TILE)
    if r_nhwc:
        planes = min(_NHWC_PLANES, c & -c)  # the largest power of two dividing c, capped
        wp = pow2(w)
        rows = max(1, min(2 * _TILE // (planes * wp), pow2(h)))
        warps = max(1, min(4, planes * rows * wp // 128))
    return ((n * c + planes - 1) // planes, (h + rows - 1) // rows), {"PL": planes, "R": rows, "WP": wp,
                                                                      "num_warps": warps}


def _empty(x: Tensor) -> Tensor:
    return x.new_empty((0,))


def _relu_like(x: Tensor, r_nhwc: bool) -> Tensor:
    return torch.empty_like(x, memory_format=torch.channels_last if r_nhwc else torch.contiguous_format)


@torch.library.custom_op("nas_cli::source_inputs", mutates_args=())
def _inputs(x: Tensor, need_r: bool, need_p: bool, r_nhwc: bool = False) -> tuple[Tensor, Tensor]:
    """(relu(x) or empty, avg_pool_3x3(x) or empty) of an NCHW-contiguous x; ``r_nhwc``: relu(x)
    channels_last (the merged conv's input in the NHWC route, ``nb201_fused.NHWC_CONVS``)."""
    r = _relu_like(x, r_nhwc) if need_r else _empty(x)
    p = torch.empty_like(x) if need_p else _empty(x)
    if need_r or need_p:
        grid, tile = _grid(x.shape, r_nhwc and need_r)
        n, c, h, w = x.shape
        _inputs_fwd_kernel[grid](x, r if need_r else x, p if need_p else x, n * c, c, h, w, NEED_R=need_r,
                                 NEED_P=need_p, R_NHWC=r_nhwc and need_r, **tile)
    return r, p


@_inputs.register_fake
def _inputs_fake(x: Tensor, need_r: bool, need_p: bool, r_nhwc: bool = False) -> tuple[Tensor, Tensor]:
    return (_relu_like(x, r_nhwc) if need_r else _empty(x)), (torch.empty_like(x) if need_p else _empty(x))


@torch.library.custom_op("nas_cli::source_inputs_backward", mutates_args=())
def _inputs_backward(shape: list[int], r: Optional[Tensor], gr: Optional[Tensor], gs: Optional[Tensor],
                     gp: Optional[Tensor], r_nhwc: bool = False) -> Tensor:
    """x's gradient of shape ``shape`` from the present output gradients (``r``: the ReLU output,
    needed with ``gr``); an output gradient may come strided, the kernel reads NCHW-contiguous (g_r
    channels_last with ``r_nhwc``)."""
    fmt = torch.channels_last if r_nhwc else torch.contiguous_format
    grads = [gr.contiguous(memory_format=fmt) if gr is not None else None,
             *(t.contiguous() if t is not None else None for t in (gs, gp))]
    like = next(t for t in grads if t is not None)
    gx = like.new_empty(shape)
    has_gr = gr is not None and r is not None
    grid, tile = _grid(gx.shape, r_nhwc and has_gr)
    n, c, h, w = shape
    rr = r if has_gr else gx
    _inputs_bwd_kernel[grid](rr, *(t if t is not None else gx for t in grads), gx, n * c, c, h, w,
                             HAS_GR=gr is not None, HAS_GS=gs is not None, HAS_GP=gp is not None,
                             R_NHWC=r_nhwc and has_gr, **tile)
    return gx


@_inputs_backward.register_fake
def _inputs_backward_fake(shape: list[int], r: Optional[Tensor], gr: Optional[Tensor], gs: Optional[Tensor],
                          gp: Optional[Tensor], r_nhwc: bool = False) -> Tensor:
    like = next(t for t in (gr, gs, gp) if t is not None)
    return like.new_empty(shape)


class _SourceInputs(torch.autograd.Function):
    """x -> (relu(x), x, avg_pool_3x3(x)); the middle output is x itself (autograd makes it a view),
    so its gradient reaches :meth:`backward` beside the other two and is summed in the same kernel."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, need_r: bool, need_p: bool,  # type: ignore[override]
                r_nhwc: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        r, p = _inputs(x, need_r, need_p, r_nhwc)
        ctx.save_for_backward(r if need_r else None)
        ctx.shape = list(x.shape)
        ctx.r_nhwc = r_nhwc
        ctx.set_materialize_grads(False)  # an unused output's gradient stays absent, not a zero tensor
        if not need_r:
            ctx.mark_non_differentiable(r)
        if not need_p:
            ctx.mark_non_differentiable(p)
        return r, x, p

    @staticmethod
    def backward(ctx: Any, gr: Optional[Tensor], gs: Optional[Tensor],  # type: ignore[override]
                 gp: Optional[Tensor]) -> tuple[Optional[Tensor], None, None, None]:
        if gr is None and gs is None and gp is None:
            return None, None, None, None
        (r,) = ctx.saved_tensors
        return _inputs_backward(ctx.shape, r, gr, gs, gp, ctx.r_nhwc), None, None, None


def supported(x: Tensor) -> bool:
    """Whether the kernels take ``x`` (``ENABLED``, NCHW-contiguous, float, on CUDA or under the interpreter, not
    while torch.compile traces: Inductor fuses the separate ops itself)."""
    return (ENABLED and x.dim() == 4 and x.is_contiguous() and x.dtype in (torch.float32, torch.bfloat16, torch.float16)
            and 0 < x.numel() < 2**31 and available(x.device) and not torch.compiler.is_compiling())


def source_inputs(x: Tensor, need_r: bool, need_p: bool, r_nhwc: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """``(relu(x), x, avg_pool_3x3(x))`` (an output not ``need``-ed is an empty tensor) in one kernel
    per direction; the caller checks :func:`supported` (the separate ops are the caller's fallback).
    ``r_nhwc``: relu(x) as a channels_last tensor (same values), for a conv that runs in NHWC."""
    return _SourceInputs.apply(x, need_r, need_p, r_nhwc)


def source_inputs_reference(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The same three outputs from the separate PyTorch ops (tests)."""
    return F.relu(x), x, F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
