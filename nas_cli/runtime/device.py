"""Device selection and mixed-precision context."""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

from nas_cli.errors import ConfigError


def resolve_device(spec: str) -> torch.device:
    spec = str(spec).lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"runtime.device '{spec}' is not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("runtime.device asks for CUDA but no CUDA device is visible; use runtime.device=cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"runtime.device={spec} but only {torch.cuda.device_count()} CUDA device(s) are visible")
    return dev


def autocast(device: torch.device, precision: str) -> ContextManager[object]:
    """bf16 autocast for the weight path; a no-op for fp32.

    The cast cache is off: every weight is used once per forward here, so it saves nothing, and
    cached casts must not outlive a CUDA-graph capture (PyTorch's guidance for graphed autocast)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext()
