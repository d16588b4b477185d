"""What the Triton conv kernels (``spaces/depthwise.py``, ``spaces/pointwise.py``) share.

The optional Triton import, the ``runtime.depthwise`` / ``runtime.pointwise`` resolution, how work is
split over the GPU's multiprocessors, and how a custom operator's backward learns which gradients
the running backward pass needs.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import torch
from torch import Tensor

from nas_cli.errors import ConfigError

#: values of runtime.depthwise and runtime.pointwise
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


def resolve_kernel_impl(name: str, device: torch.device, key: str, replayed: bool = True,
                        precision: str = "fp32", measured: tuple[str, ...] = ("fp32",)) -> str:
    """A kernel setting (``key``: ``runtime.depthwise`` or ``runtime.pointwise``) -> ``native`` or ``triton``.

    ``auto`` picks Triton for CUDA steps replayed from a CUDA graph (device-bound: the kernels'
    speed is what counts) in a ``precision`` the caller has timed the kernels in (``measured``), and
    native otherwise: an eager step is host-bound, and a custom operator's Python dispatch costs more
    than the kernel saves; a precision nobody timed keeps the library kernels.  ``triton`` where it
    cannot run is a ConfigError (one line, no traceback).
    """
    name = str(name).lower()
    if name not in CHOICES:
        raise ConfigError(f"{key} must be one of {', '.join(CHOICES)}, got '{name}'")
    if name == "native" or (name == "auto" and (not replayed or precision not in measured)):
        return "native"
    if available(device):
        return "triton"
    if name == "triton":
        why = "Triton is not installed" if triton is None else f"Triton kernels need a CUDA device, not {device.type}"
        raise ConfigError(f"{key}=triton is not possible here: {why} (use {key}=native)")
    return "native"


def nhwc_only(x: Tensor) -> bool:
    """A 4-d tensor laid out channels_last and not also NCHW-contiguous (where the layout matters)."""
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def pow2(v: int) -> int:
    """The smallest power of two >= ``v`` (Triton block sizes)."""
    return 1 << max(0, int(v) - 1).bit_length()


def out_size(size: int, k: int, s: int, p: int, d: int = 1) -> int:
    """Output length of a (dilated) sliding window along one dim, as ``F.conv2d``/``F.max_pool2d`` floor it."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def plane_tile(h: int, w: int, tile: int) -> tuple[int, int, int, int]:
    """(planes, rows, padded width, warps) of a stencil kernel's tile of about ``tile`` pixels of an
    h x w plane: rows of one plane, or whole small planes stacked (the depthwise and pooling kernels)."""
    wp = pow2(w)
    rows = max(1, min(tile // wp, pow2(h)))
    planes = max(1, tile // (rows * wp))
    return planes, rows, wp, max(1, min(4, planes * rows * wp // 128))


@functools.lru_cache(maxsize=None)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def sm_count(x: Tensor) -> int:
    """Multiprocessors of ``x``'s GPU (4 under the CPU interpreter): how finely to split reductions."""
    return _sm_count(x.device.index or 0) if x.is_cuda else 4


def splits(x: Tensor, channels: int, total: int, block: int) -> tuple[int, int]:
    """(slices of the ``total`` work items per channel, items per slice, a multiple of ``block``):
    about 8 programs per SM."""
    sms = sm_count(x)
    want = max(1, (8 * sms + channels - 1) // channels)
    blocks = (total + block - 1) // block
    per = max(1, (blocks + want - 1) // want) * block
    return (total + per - 1) // per, per


def pass_needs(ctx: Any, index: int, node: Any) -> bool:
    """Whether the running backward pass needs the gradient of input ``index`` (whose autograd node,
    its ``grad_fn`` at the forward, is ``node``).

    ``ctx.needs_input_grad`` only says the input requires grad.  PyTorch's own ops also skip what
    the current pass does not need: the architecture step's ``autograd.grad(loss, arch)`` computes
    no weight gradients.  Leaves cannot be asked, so :func:`as_graph_input` hands the op a view of
    each leaf; the engine then tells whether it will run that view's backward node.  (Under
    ``torch.compile`` tracing there is no running engine: then the static answer.)
    """
    if not ctx.needs_input_grad[index]:
        return False
    if node is None or torch.compiler.is_compiling():
        return True
    return bool(torch._C._will_engine_execute_node(node))


def as_graph_input(t: Tensor) -> Tensor:
    """``t`` itself, or for a leaf that requires grad a view of it (see :func:`pass_needs`)."""
    return t.view_as(t) if t.requires_grad and t.grad_fn is None and torch.is_grad_enabled() else t


def compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype a conv of ``x`` computes in: the CUDA autocast dtype when autocast is on, else ``x``'s."""
    if x.is_cuda and torch.is_autocast_enabled("cuda"):
        return torch.get_autocast_dtype("cuda")
    return x.dtype


def autocast_input(x: Tensor) -> Tensor:
    """``x`` in the dtype ``F.conv2d`` would compute in (:func:`compute_dtype`)."""
    return x.to(compute_dtype(x))


def set_kernel_impl(model: Any, what: str, impl: str) -> int:
    """Give every module of ``model`` that declares ``supports_<what>_impl`` the implementation ``impl``
    (attribute ``<what>_impl``); returns how many modules were set."""
    check_impl(impl, what)
    modules = [m for m in model.modules() if getattr(m, f"supports_{what}_impl", False)]
    for m in modules:
        setattr(m, f"{what}_impl", impl)
    return len(modules)


def check_impl(impl: str, what: str) -> None:
    """``impl`` must be a resolved implementation (``native`` or ``triton``)."""
    if impl not in ("native", "triton"):
        raise ConfigError(f"{what} implementation must be native or triton, got '{impl}'")
