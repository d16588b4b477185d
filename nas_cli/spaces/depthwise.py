"""Depthwise convolutions as Triton kernels (``runtime.depthwise``).

Why: after fusing the edges of a node (``darts_fused``), the depthwise convolutions of the
SepConv/DilConv ops were the largest item in the PC-DARTS search step's kernel profile (H200,
2026-12-02: about 28 % of the device time; the weight gradient alone 11 %, 76 us per call).  Their
tensors are tiny-channel (E*C/K = 8..80 channels) but large in batch x pixels (256 x 32 x 32), and
PyTorch's native fp32 depthwise weight-gradient kernel reduces every (channel, tap) pair over the
whole batch separately -- it reads the input once per tap.

The kernels here compute the same function with one pass over the data per direction:

* forward: one output element per lane, the K*K taps read through the cache;
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
tests check them without a GPU.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas_cli.errors import ConfigError

#: values of runtime.depthwise
CHOICES = ("auto", "native", "triton")

try:  # Triton ships with CUDA builds of torch; CPU-only installs may lack it
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None  # type: ignore[assignment]
    tl = None  # type: ignore[assignment]


def interpreted() -> bool:
    """Whether Triton runs its CPU interpreter (kernels then accept CPU tensors)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def available(device: torch.device) -> bool:
    """Whether the Triton kernels can run on ``device``."""
    if triton is None:
        return False
    return device.type == "cuda" or (device.type == "cpu" and interpreted())


def resolve_depthwise_impl(name: str, device: torch.device, replayed: bool = True) -> str:
    """``runtime.depthwise`` -> ``native`` or ``triton``.

    ``auto`` picks Triton for CUDA steps replayed from a CUDA graph (device-bound: the kernels'
    speed is what counts) and native otherwise: an eager step is host-bound, and a custom
    operator's Python dispatch costs more than the kernel saves.  ``triton`` where it cannot run is
    a ConfigError (one line, no traceback).
    """
    name = str(name).lower()
    if name not in CHOICES:
        raise ConfigError(f"runtime.depthwise must be one of {', '.join(CHOICES)}, got '{name}'")
    if name == "native" or (name == "auto" and not replayed):
        return "native"
    if available(device):
        return "triton"
    if name == "triton":
        why = "Triton is not installed" if triton is None else f"Triton kernels need a CUDA device, not {device.type}"
        raise ConfigError(f"runtime.depthwise=triton is not possible here: {why} (use runtime.depthwise=native)")
    return "native"


if triton is not None:

    @triton.jit
    def _fwd_kernel(x_ptr, w_ptr, y_ptr, total, C, H, W, HO, WO, K: tl.constexpr, S: tl.constexpr,
                    P: tl.constexpr, D: tl.constexpr, BLOCK: tl.constexpr):
        idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        live = idx < total
        plane = idx // (HO * WO)
        pix = idx % (HO * WO)
        oh = pix // WO
        ow = pix % WO
        c = plane % C
        x_plane = x_ptr + plane * (H * W)
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for a in tl.static_range(K):
            ih = oh * S - P + a * D
            row = live & (ih >= 0) & (ih < H)
            for b in tl.static_range(K):
                iw = ow * S - P + b * D
                ok = row & (iw >= 0) & (iw < W)
                xv = tl.load(x_plane + ih * W + iw, mask=ok, other=0.0).to(tl.float32)
                wv = tl.load(w_ptr + c * (K * K) + (a * K + b), mask=live, other=0.0).to(tl.float32)
                acc += xv * wv
        tl.store(y_ptr + idx, acc.to(y_ptr.dtype.element_ty), mask=live)

    @triton.jit
    def _bwd_input_kernel(gy_ptr, w_ptr, gx_ptr, total, C, H, W, HO, WO, K: tl.constexpr,
                          S: tl.constexpr, P: tl.constexpr, D: tl.constexpr, BLOCK: tl.constexpr):
        idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        live = idx < total
        plane = idx // (H * W)
        pix = idx % (H * W)
        ih = pix // W
        iw = pix % W
        c = plane % C
        gy_plane = gy_ptr + plane * (HO * WO)
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for a in tl.static_range(K):
            th = ih + P - a * D  # = oh * S for the output row this tap came from
            oh = th // S
            row = live & (th >= 0) & (oh < HO)
            if S > 1:
                row = row & (th % S == 0)
            for b in tl.static_range(K):
                tw = iw + P - b * D
                ow = tw // S
                ok = row & (tw >= 0) & (ow < WO)
                if S > 1:
                    ok = ok & (tw % S == 0)
                g = tl.load(gy_plane + oh * WO + ow, mask=ok, other=0.0).to(tl.float32)
                wv = tl.load(w_ptr + c * (K * K) + (a * K + b), mask=live, other=0.0).to(tl.float32)
                acc += g * wv
        tl.store(gx_ptr + idx, acc.to(gx_ptr.dtype.element_ty), mask=live)

    @triton.jit
    def _bwd_weight_kernel(x_ptr, gy_ptr, part_ptr, span, N, C, H, W, HO, WO, K: tl.constexpr,
                           S: tl.constexpr, P: tl.constexpr, D: tl.constexpr, TAPS: tl.constexpr,
                           BLOCK: tl.constexpr):
        c = tl.program_id(0)
        split = tl.program_id(1)
        taps = tl.arange(0, TAPS)
        ta = taps // K
        tb = taps % K
        tap_live = taps < K * K
        total = N * (HO * WO)
        start = split * span
        stop = tl.minimum(start + span, total)
        acc = tl.zeros([TAPS, BLOCK], dtype=tl.float32)
        for off in range(start, stop, BLOCK):
            j = off + tl.arange(0, BLOCK)
            live = j < stop
            n = j // (HO * WO)
            pix = j % (HO * WO)
            oh = pix // WO
            ow = pix % WO
            g = tl.load(gy_ptr + (n * C + c) * (HO * WO) + pix, mask=live, other=0.0).to(tl.float32)
            ih = oh[None, :] * S - P + ta[:, None] * D
            iw = ow[None, :] * S - P + tb[:, None] * D
            ok = live[None, :] & tap_live[:, None] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            xv = tl.load(x_ptr + (n[None, :] * C + c) * (H * W) + ih * W + iw, mask=ok, other=0.0)
            acc += xv.to(tl.float32) * g[None, :]
        tl.store(part_ptr + (split * C + c) * TAPS + taps, tl.sum(acc, axis=1))


def _out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _grid_1d(total: int, block: int) -> tuple[int]:
    return ((total + block - 1) // block,)


@functools.lru_cache(maxsize=None)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _splits(x: Tensor, channels: int, total: int, block: int) -> tuple[int, int]:
    """(number of batch x pixel slices per channel, elements per slice): about 4 programs per SM."""
    sms = _sm_count(x.device.index or 0) if x.is_cuda else 8
    want = max(1, (4 * sms + channels - 1) // channels)
    blocks = (total + block - 1) // block
    per = max(1, (blocks + want - 1) // want) * block
    return (total + per - 1) // per, per


_BLOCK = 512       # elements per program in the element-wise kernels
_WBLOCK = 128      # pixels per iteration of the weight-gradient kernel


# The kernels are wrapped as custom operators (not a bare autograd.Function) so that
# ``torch.compile`` treats them as opaque calls and CUDA-graph capture records their launches.
@torch.library.custom_op("nas_cli::depthwise_conv", mutates_args=())
def _conv(x: Tensor, w: Tensor, k: int, s: int, p: int, d: int) -> Tensor:
    n, c, h, wd = x.shape
    y = torch.empty((n, c, _out_size(h, k, s, p, d), _out_size(wd, k, s, p, d)), device=x.device, dtype=x.dtype)
    total = y.numel()
    _fwd_kernel[_grid_1d(total, _BLOCK)](x, w, y, total, c, h, wd, y.shape[2], y.shape[3], k, s, p, d,
                                         BLOCK=_BLOCK)
    return y


@_conv.register_fake
def _conv_fake(x: Tensor, w: Tensor, k: int, s: int, p: int, d: int) -> Tensor:
    n, c, h, wd = x.shape
    return x.new_empty((n, c, _out_size(h, k, s, p, d), _out_size(wd, k, s, p, d)))


@torch.library.custom_op("nas_cli::depthwise_conv_grad_input", mutates_args=())
def _grad_input(gy: Tensor, x: Tensor, w: Tensor, k: int, s: int, p: int, d: int) -> Tensor:
    n, c, h, wd = x.shape
    gy = gy.contiguous()
    gx = torch.empty_like(x, memory_format=torch.contiguous_format)
    total = gx.numel()
    _bwd_input_kernel[_grid_1d(total, _BLOCK)](gy, w, gx, total, c, h, wd, gy.shape[2], gy.shape[3], k, s, p, d,
                                               BLOCK=_BLOCK)
    return gx


@_grad_input.register_fake
def _grad_input_fake(gy: Tensor, x: Tensor, w: Tensor, k: int, s: int, p: int, d: int) -> Tensor:
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.custom_op("nas_cli::depthwise_conv_grad_weight", mutates_args=())
def _grad_weight(gy: Tensor, x: Tensor, w: Tensor, k: int, s: int, p: int, d: int) -> Tensor:
    n, c, h, wd = x.shape
    gy = gy.contiguous()
    taps = triton.next_power_of_2(k * k)
    total = n * gy.shape[2] * gy.shape[3]
    slices, per = _splits(x, c, total, _WBLOCK)
    part = torch.empty((slices, c, taps), device=x.device, dtype=torch.float32)
    _bwd_weight_kernel[(c, slices)](x, gy, part, per, n, c, h, wd, gy.shape[2], gy.shape[3], k, s, p, d,
                                    TAPS=taps, BLOCK=_WBLOCK)
    return part.sum(0)[:, : k * k].reshape(w.shape).to(w.dtype)


@_grad_weight.register_fake
def _grad_weight_fake(gy: Tensor, x: Tensor, w: Tensor, k: int, s: int, p: int, d: int) -> Tensor:
    return torch.empty_like(w)


def _setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    x, w, *geom = inputs
    ctx.save_for_backward(x, w)
    ctx.geom = geom


def _backward(ctx: Any, gy: Tensor) -> tuple[Tensor | None, ...]:
    x, w = ctx.saved_tensors
    gx = _grad_input(gy, x, w, *ctx.geom) if ctx.needs_input_grad[0] else None
    gw = _grad_weight(gy, x, w, *ctx.geom) if ctx.needs_input_grad[1] else None
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
            and (x.is_cuda or (x.device.type == "cpu" and interpreted()))
            and x.numel() < 2**31)


def depthwise_conv2d(x: Tensor, weight: Tensor, stride: Any = 1, padding: Any = 0, dilation: Any = 1) -> Tensor:
    """Depthwise ``F.conv2d`` (``groups = channels``, no bias) through the Triton kernels.

    Under CUDA autocast the input and weight are cast to the autocast dtype, as ``F.conv2d`` would
    be; the weight gradient is accumulated in fp32 and returned in the weight's dtype.  Falls back
    to ``F.conv2d`` for anything :func:`supported` rejects.
    """
    if not supported(x, weight, stride, padding, dilation):
        return F.conv2d(x, weight, None, stride, padding, dilation, x.shape[1])
    if x.is_cuda and torch.is_autocast_enabled("cuda"):
        dt = torch.get_autocast_dtype("cuda")
        x = x.to(dt)
    return _conv(x, weight.contiguous(), int(weight.shape[2]), _uniform(stride),  # type: ignore[arg-type]
                 _uniform(padding), _uniform(dilation))


def is_depthwise(conv: nn.Conv2d) -> bool:
    """A bias-free, zero-padded conv with one filter per input channel (what the kernels compute)."""
    return (conv.groups == conv.in_channels == conv.out_channels and conv.bias is None
            and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
            and conv.kernel_size[0] == conv.kernel_size[1])


class DepthwiseConv2d(nn.Conv2d):
    """A depthwise ``nn.Conv2d`` whose kernels ``impl`` chooses (same parameters and state_dict)."""

    impl: str = "native"

    def forward(self, x: Tensor) -> Tensor:
        if self.impl == "triton":
            return depthwise_conv2d(x, self.weight, self.stride, self.padding, self.dilation)
        return super().forward(x)


def use_depthwise_impl(model: nn.Module, impl: str) -> int:
    """Run every depthwise conv of ``model`` with ``impl`` (``native`` or ``triton``); returns how many.

    Plain depthwise ``nn.Conv2d`` modules are switched in place to :class:`DepthwiseConv2d`; fused
    stages that stack depthwise convs (``supports_depthwise_impl``) get the setting as an attribute.
    """
    if impl not in ("native", "triton"):
        raise ConfigError(f"depthwise implementation must be native or triton, got '{impl}'")
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
