"""Dense stride-1 1x1 convolutions as matmuls over the NHWC view (``runtime.conv1x1``).

Why: in a channels_last network a 1x1 conv *is* a matmul, ``y[n, h, w, :] = W @ x[n, h, w, :]``, over
the (N*H*W, C) view that the NHWC layout already is in memory.  The paper's evaluation network runs
259 of them per step at 36..576 channels (the cells' preprocessing and every SepConv/DilConv
pointwise conv); as ``aten.convolution`` they are cuDNN/cutlass calls that Inductor can only call, in
all three directions.  Written as ``F.linear`` on the NHWC view, the forward and both gradients are
plain matmuls that Inductor can tune and fuse with its neighbours like any other ``mm`` (see
``runtime.compile_options``).  The permutes are views: no data moves.

``wgrad_matmul`` keeps cuDNN's forward and input gradient and computes only the weight gradient as a
matmul: per shape the fastest of each direction on the H200 (``benchmarks/eval_convs.py --conv1x1``).
``triton`` runs the same GEMMs as this project's Triton kernels (``spaces/dense1x1_kernels.py``;
their first version measured about 3x slower than cuDNN).  ``auto`` is ``conv``: the matmuls were
measured slower in the step (0.0416 s against 0.0400 s), and ``wgrad_matmul`` no faster (0.0400 s, H200).

Same function as ``F.conv2d(x, w)`` with a 1x1 kernel: the same products summed over the input
channels, in another order (fp32 accumulation).  Same parameters and state_dict: the module stays an
``nn.Conv2d`` whose class is switched in place (as ``DepthwiseConv2d`` is); NCHW inputs keep the conv.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas_cli.errors import ConfigError
from nas_cli.spaces import dense1x1_kernels as kernels
from nas_cli.spaces.triton_support import available

#: values of runtime.conv1x1
CHOICES = ("auto", "conv", "matmul", "wgrad_matmul", "triton")


class _ConvMatmulWeightGrad(torch.autograd.Function):
    """``F.conv2d(x, w)`` (1x1, no bias) with cuDNN's forward and input gradient and the weight gradient
    as one ``gy^T x`` matmul over the NHWC rows: per shape the fastest kernels of each direction
    measured on the H200 (``benchmarks/eval_convs.py --conv1x1``, 2026-12-03; e.g. 72 channels at 16x16:
    weight gradient 15.4 us as a matmul, 28.3 us as cuDNN's)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, w)
        return F.conv2d(x, w)

    @staticmethod
    def backward(ctx: Any, gy: Tensor) -> tuple[Tensor | None, Tensor | None]:  # type: ignore[override]
        x, w = ctx.saved_tensors
        gx = gw = None
        if ctx.needs_input_grad[0]:
            gx = torch.ops.aten.convolution_backward(gy, x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1,
                                                     [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            gw = (kernels.nhwc_rows(gy).t() @ kernels.nhwc_rows(x)).view(w.shape)
        return gx, gw


class MatmulConv1x1(nn.Conv2d):
    """A dense stride-1 1x1 ``nn.Conv2d`` on a channels_last input: as ``F.linear`` over its NHWC view
    (``impl = "matmul"``), as cuDNN's conv with the weight gradient as a matmul (``"wgrad_matmul"``,
    no bias, not under autocast: its backward would mix dtypes), or as the Triton GEMMs (``"triton"``,
    fp32, no bias)."""

    impl: str = "matmul"

    def forward(self, x: Tensor) -> Tensor:
        if self.impl == "triton" and self.bias is None and kernels.supported(x, self.weight):
            return kernels.conv1x1_nhwc(x, self.weight)
        nhwc = x.dim() == 4 and x.permute(0, 2, 3, 1).is_contiguous()
        if self.impl == "wgrad_matmul" and self.bias is None and nhwc and not torch.is_autocast_enabled(x.device.type):
            return _ConvMatmulWeightGrad.apply(x, self.weight)  # type: ignore[no-any-return]
        if self.impl == "matmul" and nhwc:
            y = F.linear(x.permute(0, 2, 3, 1), self.weight.flatten(1), self.bias)
            return y.permute(0, 3, 1, 2)
        return super().forward(x)


def is_dense_1x1(m: nn.Module) -> bool:
    """A plain 1x1 conv this module can run as a matmul: stride 1, no padding, one group."""
    return (isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.stride == (1, 1)
            and m.padding in ((0, 0), "valid") and m.groups == 1 and m.padding_mode == "zeros")


def resolve_conv1x1(name: str, device: torch.device | None = None) -> str:
    """``runtime.conv1x1`` -> ``conv``, ``matmul``, ``wgrad_matmul`` or ``triton``; ``auto`` keeps the conv
    (the measured default); ``triton`` where the kernels cannot run is a ConfigError."""
    name = str(name).lower()
    if name not in CHOICES:
        raise ConfigError(f"runtime.conv1x1 must be one of {', '.join(CHOICES)}, got '{name}'")
    if name == "triton" and not available(device or torch.device("cpu")):
        raise ConfigError("runtime.conv1x1=triton needs Triton and a CUDA device (use runtime.conv1x1=matmul or conv)")
    return "conv" if name == "auto" else name


def match_conv_precision() -> None:
    """Let matmuls use TF32 exactly when cuDNN's convolutions may (``allow_tf32``): PyTorch's defaults
    allow it for convolutions and not for matmuls, so without this the 1x1 convs would change precision
    by becoming matmuls (and run the slower full-fp32 GEMMs: 0.0535 s per evaluation step on the H200
    against 0.0400 s as convs, 2026-12-03).  A process-wide flag: it also covers the classifier."""
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32


def use_conv1x1_impl(model: nn.Module, impl: str) -> int:
    """Run every dense stride-1 1x1 conv of ``model`` as ``impl`` (``conv``, ``matmul``, ``wgrad_matmul``, ``triton``);
    returns how many."""
    if impl not in CHOICES[1:]:
        raise ConfigError(f"runtime.conv1x1 implementation must be one of {', '.join(CHOICES[1:])}, got '{impl}'")
    count = 0
    for m in model.modules():
        if type(m) in (nn.Conv2d, MatmulConv1x1) and is_dense_1x1(m):
            m.__class__ = nn.Conv2d if impl == "conv" else MatmulConv1x1
            if impl != "conv":
                m.impl = impl  # type: ignore[assignment]
            count += 1
    return count
