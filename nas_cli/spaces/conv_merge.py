"""The fused NB201 cell's merged conv weight, ``cat([w3, pad(w1)])``, as one Triton kernel.

Why: each source node of the fused NB201 cell runs its edges' 3x3 and 1x1 convs as one 3x3 conv, with
the 1x1 weights zero-padded to 3x3 (``nb201_fused._SharedInputConvs``).  Built from PyTorch ops, that
weight costs a fill and a copy for the padding and a concatenation: three kernels per source and
forward, about 270 per NB201 step (45 sources, two forward passes), each a microsecond or two of work
between replayed kernels.  This kernel writes the merged weight in one pass: the 3x3 block copied, the
1x1 block's centre taps copied and its other taps set to exact zeros.

Same values and gradients as the PyTorch ops, bit for bit: both directions only move numbers.  The
backward takes the merged weight's gradient apart, the 3x3 block and the 1x1 block's centre taps.  As
views of it (``UNMERGE_KERNEL`` off) these are strided unlike the weights, so autograd copies each into
the weight's layout when it accumulates it: two small copy kernels per source and weight step, about 90
per NB201 step.  ``UNMERGE_KERNEL`` writes both contiguous gradients in one kernel instead, which
autograd keeps as they are.

``ENABLED`` is on since the twelfth session: the CUDA checks passed on the H200, and
``benchmarks/nb201_merge.py`` (both settings in one process, two rounds) timed the NB201 GDAS step at
0.01738 / 0.01769 s with the kernel against 0.01781 / 0.01839 s without, GAEA DARTS at 0.01684 /
0.01705 s against 0.01683 / 0.01762 s.  Off, the weight is built from the PyTorch ops.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from nas_cli.spaces.triton_support import available, nhwc_only, tl, triton

if triton is not None:

    @triton.jit
    def _merge_kernel(w3_ptr, w1_ptr, out_ptr, N3, TOTAL, CIN, CL: tl.constexpr, BLOCK: tl.constexpr):
        """out[i] = w3[i] for i < N3; past it, w1[(i - N3) // 9] at the centre tap (4) and 0 elsewhere.
        With CL, i runs over the channels_last memory of out (per output channel: taps x input channels),
        read from the NCHW-contiguous w3 and w1."""
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        live = i < TOTAL
        in3 = i < N3
        if CL:
            k = i // (9 * CIN)
            tap = (i % (9 * CIN)) // CIN
            c = i % CIN
            src3 = (k * CIN + c) * 9 + tap
            src1 = tl.maximum(k * CIN + c - N3 // 9, 0)
            centre = tap == 4
        else:
            src3 = i
            j = tl.maximum(i - N3, 0)
            src1 = j // 9
            centre = j % 9 == 4
        v3 = tl.load(w3_ptr + src3, mask=live & in3, other=0.0)
        v1 = tl.load(w1_ptr + src1, mask=live & (i >= N3) & centre, other=0.0)
        tl.store(out_ptr + i, tl.where(in3, v3, v1), mask=live)


    @triton.jit
    def _split_grad_kernel(g_ptr, s3_ptr, s1_ptr, g3_ptr, g1_ptr, N3, K1, TOTAL, CIN, CL: tl.constexpr,
                           SCALED: tl.constexpr, BLOCK: tl.constexpr):
        """A 3x3 weight's gradient ``g`` taken apart into the gradients of the two weights it was built from
        (the transpose of the merge and select kernels): i < N3 indexes the NCHW-contiguous g3 (g's 3x3
        rows), past it the contiguous g1 (the 1x1 weight: g's centre taps of rows ``K1 + j // CIN``).  The
        merge kernel's weight stacks the 1x1 rows after the 3x3 ones (``K1`` = the 3x3 rows); the select
        kernel's overlays them (``K1`` = 0).  With ``SCALED`` each gradient is times its row's 0/1 mask
        (``s3`` for g3, ``s1`` for g1; unread otherwise).  With CL, g is channels_last (per output
        channel: taps x input channels), else NCHW-contiguous."""
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        live = i < TOTAL
        in3 = i < N3
        j = tl.maximum(i - N3, 0)
        k3, c3, tap = i // (9 * CIN), (i // 9) % CIN, i % 9
        k1, c1 = K1 + j // CIN, j % CIN
        if CL:
            src = tl.where(in3, k3 * 9 * CIN + tap * CIN + c3, k1 * 9 * CIN + 4 * CIN + c1)
        else:
            src = tl.where(in3, i, (k1 * CIN + c1) * 9 + 4)
        v = tl.load(g_ptr + src, mask=live, other=0.0)
        if SCALED:
            s = tl.where(in3, tl.load(s3_ptr + k3, mask=live & in3, other=0.0),
                         tl.load(s1_ptr + k1, mask=live & (i >= N3), other=0.0)).to(v.dtype)
            v = s * v
        tl.store(g3_ptr + i, v, mask=live & in3)
        tl.store(g1_ptr + j, v, mask=live & (i >= N3))


    @triton.jit
    def _select_kernel(w3_ptr, w1_ptr, s3_ptr, s1_ptr, out_ptr, TOTAL, CIN, CL: tl.constexpr, BLOCK: tl.constexpr):
        """out[k] = s3[k] * w3[k] + s1[k] * pad(w1[k]) per output channel k: the 3x3 weight of the conv op
        an edge selected (masks 0/1, at most one 1 per k).  With CL, i runs over out's channels_last memory
        (per output channel: taps x input channels), read from the NCHW-contiguous w3 and w1."""
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        live = i < TOTAL
        k = i // (9 * CIN)
        if CL:
            tap = (i % (9 * CIN)) // CIN
            c = i % CIN
        else:
            tap = i % 9
            c = (i // 9) % CIN
        centre = tap == 4
        v3 = tl.load(w3_ptr + (k * CIN + c) * 9 + tap, mask=live, other=0.0)
        v1 = tl.load(w1_ptr + k * CIN + c, mask=live & centre, other=0.0)
        s3 = tl.load(s3_ptr + k, mask=live, other=0.0).to(v3.dtype)
        s1 = tl.load(s1_ptr + k, mask=live, other=0.0).to(v3.dtype)
        tl.store(out_ptr + i, s3 * v3 + tl.where(centre, s1 * v1, 0.0), mask=live)


_BLOCK = 1024
#: whether ``merge_1x1_into_3x3(..., impl="triton")`` takes the kernel (see the module docstring)
#: (set per run with ``runtime.kernel_switches.merge_kernel``: nas_cli/runtime/switches.py)
ENABLED = True
#: whether the merged weight's backward writes contiguous gradients in one kernel (module docstring)
#: (set per run with ``runtime.kernel_switches.unmerge_kernel``: nas_cli/runtime/switches.py)
UNMERGE_KERNEL = True


def _shape(w3: Tensor, w1: Tensor) -> tuple[int, int, int, int]:
    return (w3.shape[0] + w1.shape[0], w3.shape[1], 3, 3)


def _format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


@torch.library.custom_op("nas_cli::merge_1x1_into_3x3", mutates_args=())
def _merge(w3: Tensor, w1: Tensor, channels_last: bool = False) -> Tensor:
    w3, w1 = w3.contiguous(), w1.contiguous()
    out = w3.new_empty(_shape(w3, w1)).contiguous(memory_format=_format(channels_last))
    total = out.numel()
    _merge_kernel[((total + _BLOCK - 1) // _BLOCK,)](w3, w1, out, w3.numel(), total, w3.shape[1],
                                                     CL=channels_last, BLOCK=_BLOCK)
    return out


@_merge.register_fake
def _merge_fake(w3: Tensor, w1: Tensor, channels_last: bool = False) -> Tensor:
    return w3.new_empty(_shape(w3, w1)).contiguous(memory_format=_format(channels_last))


@torch.library.custom_op("nas_cli::unmerge_3x3_grad", mutates_args=())
def _unmerge(g: Tensor, split: int) -> tuple[Tensor, Tensor]:
    cl = nhwc_only(g)
    if not cl:
        g = g.contiguous()
    cin = g.shape[1]
    g3 = g.new_empty((split, cin, 3, 3))
    g1 = g.new_empty((g.shape[0] - split, cin, 1, 1))
    total = g3.numel() + g1.numel()
    # the masks are not read (SCALED off): g stands in for their pointers
    _split_grad_kernel[((total + _BLOCK - 1) // _BLOCK,)](g, g, g, g3, g1, g3.numel(), split, total, cin, CL=cl,
                                                          SCALED=False, BLOCK=_BLOCK)
    return g3, g1


@_unmerge.register_fake
def _unmerge_fake(g: Tensor, split: int) -> tuple[Tensor, Tensor]:
    return g.new_empty((split, g.shape[1], 3, 3)), g.new_empty((g.shape[0] - split, g.shape[1], 1, 1))


def _setup(ctx: Any, inputs: tuple[Tensor, Tensor, bool], output: Tensor) -> None:
    ctx.split = inputs[0].shape[0]


def _backward(ctx: Any, g: Tensor) -> tuple[Tensor, Tensor, None]:
    if UNMERGE_KERNEL:
        g3, g1 = _unmerge(g, ctx.split)
        return g3, g1, None
    return g[: ctx.split], g[ctx.split :, :, 1:2, 1:2], None


_merge.register_autograd(_backward, setup_context=_setup)


def supported(w3: Tensor, w1: Tensor) -> bool:
    """Whether the kernel builds this weight: (A, C, 3, 3) and (B, C, 1, 1) of one float dtype and device."""
    return (w3.dim() == 4 and w1.dim() == 4 and tuple(w3.shape[2:]) == (3, 3) and tuple(w1.shape[2:]) == (1, 1)
            and w3.shape[1] == w1.shape[1] and w3.dtype == w1.dtype and w3.device == w1.device
            and w3.dtype in (torch.float32, torch.bfloat16, torch.float16)
            and (w3.numel() + 9 * w1.numel()) < 2**31 and available(w3.device))


def merge_1x1_into_3x3(w3: Tensor, w1: Tensor, impl: str = "native", channels_last: bool = False) -> Tensor:
    """``torch.cat([w3, F.pad(w1, (1, 1, 1, 1))])``: one kernel with ``impl="triton"`` where it is
    ``ENABLED`` and :func:`supported` allows, the PyTorch ops otherwise.  ``channels_last``: the
    kernel writes the weight in that memory format (the layout of a conv over channels_last input,
    which cuDNN would otherwise get from a copy); same values either way."""
    if impl == "triton" and ENABLED and supported(w3, w1):
        return _merge(w3, w1, channels_last)
    return torch.cat([w3, F.pad(w1, (1, 1, 1, 1))], 0)


# ------------------------------------------------------------------ the selected conv op's weight
@torch.library.custom_op("nas_cli::select_3x3", mutates_args=())
def _select(w3: Tensor, w1: Tensor, s3: Tensor, s1: Tensor, channels_last: bool = False) -> Tensor:
    w3, w1, s3, s1 = w3.contiguous(), w1.contiguous(), s3.contiguous(), s1.contiguous()
    out = torch.empty_like(w3, memory_format=_format(channels_last))
    total = out.numel()
    _select_kernel[((total + _BLOCK - 1) // _BLOCK,)](w3, w1, s3, s1, out, total, w3.shape[1],
                                                      CL=channels_last, BLOCK=_BLOCK)
    return out


@_select.register_fake
def _select_fake(w3: Tensor, w1: Tensor, s3: Tensor, s1: Tensor, channels_last: bool = False) -> Tensor:
    return torch.empty_like(w3, memory_format=_format(channels_last))


@torch.library.custom_op("nas_cli::unselect_3x3_grad", mutates_args=())
def _unselect(g: Tensor, s3: Tensor, s1: Tensor) -> tuple[Tensor, Tensor]:
    cl = nhwc_only(g)
    if not cl:
        g = g.contiguous()
    s3, s1 = s3.contiguous(), s1.contiguous()
    a, cin = g.shape[:2]
    g3 = g.new_empty((a, cin, 3, 3))
    g1 = g.new_empty((a, cin, 1, 1))
    total = g3.numel() + g1.numel()
    _split_grad_kernel[((total + _BLOCK - 1) // _BLOCK,)](g, s3, s1, g3, g1, g3.numel(), 0, total, cin, CL=cl,
                                                          SCALED=True, BLOCK=_BLOCK)
    return g3, g1


@_unselect.register_fake
def _unselect_fake(g: Tensor, s3: Tensor, s1: Tensor) -> tuple[Tensor, Tensor]:
    return g.new_empty((g.shape[0], g.shape[1], 3, 3)), g.new_empty((g.shape[0], g.shape[1], 1, 1))


def _select_setup(ctx: Any, inputs: tuple[Tensor, Tensor, Tensor, Tensor, bool], output: Tensor) -> None:
    ctx.save_for_backward(inputs[2], inputs[3])


def _select_backward(ctx: Any, g: Tensor) -> tuple[Tensor, Tensor, None, None, None]:
    s3, s1 = ctx.saved_tensors
    g3, g1 = _unselect(g, s3, s1)
    return g3, g1, None, None, None


_select.register_autograd(_select_backward, setup_context=_select_setup)


def select_supported(w3: Tensor, w1: Tensor, s3: Tensor, s1: Tensor) -> bool:
    """Whether the kernels build this weight: (A, C, 3, 3) and (A, C, 1, 1) weights and (A,) masks,
    float, on one device."""
    a = w3.shape[0]
    return (supported(w3, w1) and w1.shape[0] == a and tuple(s3.shape) == (a,) and tuple(s1.shape) == (a,)
            and s3.device == w3.device and s1.device == w3.device and s3.is_floating_point()
            and s1.is_floating_point() and not s3.requires_grad and not s1.requires_grad)


def select_3x3(w3: Tensor, w1: Tensor, s3: Tensor, s1: Tensor, impl: str = "native",
               channels_last: bool = False) -> Tensor:
    """Per output channel k, the 3x3 weight of the conv op its edge selected:
    ``s3[k] * w3[k] + s1[k] * pad(w1[k])`` with 0/1 masks ``s3``, ``s1`` (at most one of them 1 per k).

    Why: a masked one-hot NB201 forward runs each edge's selected op only, and at most one of an edge's
    two conv ops is selected.  The merged conv (:func:`merge_1x1_into_3x3`) computes both; this weight
    computes the selected one in half the output channels (zeros where neither is selected, which the
    weighted sum multiplies by exact zeros).  Exact: a product by 0 or 1 and a sum with exact zeros, so
    the weight equals the selected op's (padded) weight bit for bit, and the gradients are ``s3 * g`` and
    ``s1 * g``'s centre tap: the unselected op's exactly zero.  One kernel per direction with
    ``impl="triton"`` where :func:`select_supported`; the PyTorch ops otherwise."""
    if impl == "triton" and select_supported(w3, w1, s3, s1):
        return _select(w3, w1, s3, s1, channels_last)
    return w3 * s3.view(-1, 1, 1, 1).to(w3.dtype) + F.pad(w1 * s1.view(-1, 1, 1, 1).to(w1.dtype), (1, 1, 1, 1))
