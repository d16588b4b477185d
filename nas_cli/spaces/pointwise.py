"""Grouped 1x1 convolutions with few channels per group as Triton kernels.

Why: the fused DARTS cell runs the 1x1 convs of the E edges of a node as one block-diagonal conv
with ``groups = E`` and c = 4..16 channels per group (PC-DARTS).  As batched matmuls those are
(c x c) @ (c x H*W) products with an inner dimension of 4..16: GEMM kernels run them far below
memory bandwidth, and the weight gradient becomes one small product per image followed by a sum
over the batch.  After the depthwise convs these matmuls were the next largest item of the search
step's kernel profile (H200, 2026-12-02: about 20 % of the device time).

The kernels read each activation once per direction:

* forward and input gradient: one program per (image, group, pixel block) multiplies the group's
  c x c weight with the block's c input rows, in registers;
* weight gradient: one program per (group, slice of the batch x pixel range) accumulates the
  c x c outer-product sums, and the per-slice partial sums are added in a fixed order afterwards.
  (Measured slower than the batched matmul on the H200, so ``NATIVE_WEIGHT_GRAD`` keeps the matmul.)

Accumulation is fp32.  Same function as ``F.conv2d(x, w, groups=G)`` with a 1x1 kernel.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas_cli.spaces.triton_support import (as_graph_input, autocast_input, available, pass_needs, pow2, set_kernel_impl,
                                           splits, tl, triton)

#: channels per group the kernels take (the accumulator holds a CO x CI tile per lane block)
MAX_GROUP_CHANNELS = 32

if triton is not None:

    @triton.jit
    def _mix_kernel(x_ptr, w_ptr, y_ptr, HW, G, w_so, w_si, CI: tl.constexpr, CO: tl.constexpr,
                    CO_P: tl.constexpr, BLOCK: tl.constexpr):
        """y[n, g*CO + o, p] = sum_i w[g, o, i] x[n, g*CI + i, p] (w addressed by strides)."""
        ng = tl.program_id(0)
        g = ng % G
        n = ng // G
        p = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        live = p < HW
        o = tl.arange(0, CO_P)
        o_live = o < CO
        x_rows = x_ptr + (n * (G * CI) + g * CI) * HW
        w_g = w_ptr + g * (CO * CI)
        acc = tl.zeros([CO_P, BLOCK], dtype=tl.float32)
        for i in tl.static_range(CI):
            xv = tl.load(x_rows + i * HW + p, mask=live, other=0.0).to(tl.float32)
            wv = tl.load(w_g + o * w_so + i * w_si, mask=o_live, other=0.0).to(tl.float32)
            acc += wv[:, None] * xv[None, :]
        y_rows = y_ptr + (n * (G * CO) + g * CO) * HW
        tl.store(y_rows + o[:, None] * HW + p[None, :], acc.to(y_ptr.dtype.element_ty),
                 mask=o_live[:, None] & live[None, :])

    @triton.jit
    def _wgrad_kernel(x_ptr, gy_ptr, part_ptr, span, N, HW, G, CI: tl.constexpr, CO: tl.constexpr,
                      CI_P: tl.constexpr, CO_P: tl.constexpr, BLOCK: tl.constexpr):
        """part[s, g, o, i] = sum over this slice's (n, p) of gy[n, g*CO + o, p] x[n, g*CI + i, p]."""
        g = tl.program_id(0)
        split = tl.program_id(1)
        o = tl.arange(0, CO_P)
        i = tl.arange(0, CI_P)
        total = N * HW
        start = split * span
        stop = tl.minimum(start + span, total)
        acc = tl.zeros([CO_P, CI_P], dtype=tl.float32)
        for off in range(start, stop, BLOCK):
            j = off + tl.arange(0, BLOCK)
            live = j < stop
            n = j // HW
            p = j % HW
            gy = tl.load(gy_ptr + (n[None, :] * (G * CO) + g * CO + o[:, None]) * HW + p[None, :],
                         mask=(o[:, None] < CO) & live[None, :], other=0.0).to(tl.float32)
            xv = tl.load(x_ptr + (n[None, :] * (G * CI) + g * CI + i[:, None]) * HW + p[None, :],
                         mask=(i[:, None] < CI) & live[None, :], other=0.0).to(tl.float32)
            acc += tl.sum(gy[:, None, :] * xv[None, :, :], axis=2)
        tl.store(part_ptr + ((split * G + g) * CO_P + o[:, None]) * CI_P + i[None, :], acc)


_BLOCK = 256      # pixels per program (forward, input gradient)
_WBLOCK = 32      # pixels per iteration of the weight-gradient kernel (CO_P x CI_P x 32 in registers)


def _p2(v: int) -> int:
    return max(2, pow2(v))


def _mix(x: Tensor, w: Tensor, groups: int, co: int, ci: int, w_so: int, w_si: int) -> Tensor:
    n, _, h, wd = x.shape
    hw = h * wd
    y = torch.empty((n, groups * co, h, wd), device=x.device, dtype=x.dtype)
    _mix_kernel[(n * groups, (hw + _BLOCK - 1) // _BLOCK)](x, w, y, hw, groups, w_so, w_si, CI=ci, CO=co,
                                                            CO_P=_p2(co), BLOCK=_BLOCK)
    return y


@torch.library.custom_op("nas_cli::grouped_pointwise", mutates_args=())
def _pointwise(x: Tensor, w: Tensor, groups: int) -> Tensor:
    co, ci = w.shape[0] // groups, w.shape[1]
    return _mix(x, w, groups, co, ci, ci, 1)


@_pointwise.register_fake
def _pointwise_fake(x: Tensor, w: Tensor, groups: int) -> Tensor:
    return x.new_empty((x.shape[0], w.shape[0], x.shape[2], x.shape[3]))


@torch.library.custom_op("nas_cli::grouped_pointwise_grad_input", mutates_args=())
def _grad_input(gy: Tensor, w: Tensor, groups: int) -> Tensor:
    co, ci = w.shape[0] // groups, w.shape[1]
    return _mix(gy.contiguous(), w, groups, ci, co, 1, ci)  # w^T per group: swap the strides


@_grad_input.register_fake
def _grad_input_fake(gy: Tensor, w: Tensor, groups: int) -> Tensor:
    return gy.new_empty((gy.shape[0], w.shape[1] * groups, gy.shape[2], gy.shape[3]))


#: the weight gradient keeps the batched matmul (a (c x HW) @ (HW x c) product per image and group,
#: summed over the batch): on the H200 the Triton kernel below took 17/36/30/26 us where the matmul
#: took 9/19/16/16 us for the search supernet's four 1x1 shapes (2026-12-02, conv_kernels.py)
#: (set per run with ``runtime.kernel_switches.native_pointwise_weight_grad``: nas_cli/runtime/switches.py)
NATIVE_WEIGHT_GRAD = True


def matmul_weight_grad(gy: Tensor, x: Tensor, w: Tensor, groups: int) -> Tensor:
    """The 1x1 weight gradient as the batched-matmul path's autograd computes it."""
    n, _, h, wd = x.shape
    co, ci = w.shape[0] // groups, w.shape[1]
    per_image = torch.matmul(gy.reshape(n, groups, co, h * wd), x.reshape(n, groups, ci, h * wd).transpose(-1, -2))
    return per_image.sum(0).reshape(w.shape).to(w.dtype).contiguous()


def triton_weight_grad(gy: Tensor, x: Tensor, w: Tensor, groups: int) -> Tensor:
    """The weight-gradient kernel (:func:`_grad_weight` uses it unless ``NATIVE_WEIGHT_GRAD``)."""
    gy = gy.contiguous()
    n, _, h, wd = x.shape
    co, ci = w.shape[0] // groups, w.shape[1]
    total = n * h * wd
    slices, per = splits(x, groups, total, _WBLOCK)
    co_p, ci_p = _p2(co), _p2(ci)
    part = torch.empty((slices, groups, co_p, ci_p), device=x.device, dtype=torch.float32)
    _wgrad_kernel[(groups, slices)](x, gy, part, per, n, h * wd, groups, CI=ci, CO=co, CI_P=ci_p, CO_P=co_p,
                                    BLOCK=_WBLOCK)
    return part.sum(0)[:, :co, :ci].reshape(w.shape).to(w.dtype).contiguous()


@torch.library.custom_op("nas_cli::grouped_pointwise_grad_weight", mutates_args=())
def _grad_weight(gy: Tensor, x: Tensor, w: Tensor, groups: int) -> Tensor:
    if NATIVE_WEIGHT_GRAD:
        return matmul_weight_grad(gy.contiguous(), x, w, groups)
    return triton_weight_grad(gy, x, w, groups)


@_grad_weight.register_fake
def _grad_weight_fake(gy: Tensor, x: Tensor, w: Tensor, groups: int) -> Tensor:
    return torch.empty_like(w, memory_format=torch.contiguous_format)


def _setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    x, w, groups = inputs
    ctx.save_for_backward(x, w)
    ctx.groups = groups
    ctx.nodes = (x.grad_fn, w.grad_fn)  # which gradients a backward pass needs (pass_needs)


def _backward(ctx: Any, gy: Tensor) -> tuple[Tensor | None, ...]:
    x, w = ctx.saved_tensors
    gx = _grad_input(gy, w, ctx.groups) if pass_needs(ctx, 0, ctx.nodes[0]) else None
    gw = _grad_weight(gy, x, w, ctx.groups) if pass_needs(ctx, 1, ctx.nodes[1]) else None
    return gx, gw, None


_pointwise.register_autograd(_backward, setup_context=_setup)


def supported(x: Tensor, weight: Tensor, groups: int) -> bool:
    """Whether the Triton path computes this grouped 1x1 conv."""
    return (triton is not None and x.dim() == 4 and x.is_contiguous() and weight.dim() == 4
            and weight.shape[2:] == (1, 1) and weight.shape[0] % groups == 0
            and x.shape[1] == weight.shape[1] * groups
            and max(weight.shape[0] // groups, weight.shape[1]) <= MAX_GROUP_CHANNELS
            and x.dtype in (torch.float32, torch.bfloat16, torch.float16)
            and available(x.device)
            and x.numel() < 2**31)


def grouped_pointwise_triton(x: Tensor, weight: Tensor, groups: int) -> Tensor:
    """``F.conv2d(x, weight, groups=groups)`` (1x1, stride 1, no bias) through the Triton kernels;
    ``F.conv2d`` for what :func:`supported` rejects.  Autocast as in ``depthwise_conv2d``."""
    if not supported(x, weight, groups):
        return F.conv2d(x, weight, None, 1, 0, 1, groups)
    return _pointwise(autocast_input(x), as_graph_input(weight.contiguous()), groups)  # type: ignore[arg-type]


def use_pointwise_impl(model: nn.Module, impl: str) -> int:
    """Run the fused cells' grouped 1x1 convs (``supports_pointwise_impl``) with ``impl``
    (``native``: batched matmul, or ``triton``); returns how many stages were set."""
    return set_kernel_impl(model, "pointwise", impl)
