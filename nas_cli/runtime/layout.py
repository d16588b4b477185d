"""``runtime.channels_last``: which networks run with NHWC activations and weights.

Why ``auto`` is per network: the same layout helps one network and hurts another.  On the H200
(2026-12-02, fp32) the compiled evaluation network's step went from 0.0553 s (NCHW) to 0.0507 s in
channels_last, and to 0.0451 s with the depthwise routing of ``spaces/depthwise.py``, because cuDNN's
NHWC depthwise and 1x1 kernels beat its NCHW ones at most of that network's shapes
(``benchmarks/eval_convs.py``).  The search supernets' steps were slower in channels_last (NB201
GAEA DARTS 0.0376 s against 0.0330 s, fifth session): their fused kernels are NCHW kernels.
Layout changes only the order of floating-point sums, not the function computed.
"""

from __future__ import annotations

from typing import Any

#: values of runtime.channels_last
CHOICES = ("auto", "true", "false")


def channels_last_enabled(mode: Any, auto: bool) -> bool:
    """Resolve ``runtime.channels_last``: ``true``/``false`` as given, ``auto`` -> ``auto`` (whether
    this network was measured faster in channels_last on this device and with these settings)."""
    mode = str(mode).lower()  # a bare `true` override arrives as the bool True
    return auto if mode == "auto" else mode == "true"
