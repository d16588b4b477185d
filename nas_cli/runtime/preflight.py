"""Device-dependent setting checks, run before a stage prints its header or creates a directory.

Most settings are checked from the config alone (``config.validate``).  A few are valid or not
depending on the machine: ``runtime.cuda_graphs=true`` and ``runtime.branch_streams=true`` need CUDA,
the ``triton`` kernel settings need Triton and a CUDA device.  The builders that use them raise the
same errors, but only once a stage has started writing (an empty ``seed0/`` under the run
directory); checking them here first means a wrong setting costs one line and leaves nothing behind.
The checks call the builders' own resolvers, so the messages are theirs.
"""

from __future__ import annotations

from typing import Any

import torch

from nas_cli.runtime.device import resolve_device


def check_device_settings(cfg: Any) -> torch.device:
    """Resolve ``runtime.device`` and raise the first ConfigError a builder would raise on this
    machine for a setting that needs hardware or software it lacks; returns the device's kind
    (the local rank's index is decided later, by the builders)."""
    from nas_cli.runtime.graphs import NO_CUDA, graphs_enabled
    from nas_cli.spaces.batchnorm import resolve_impl as resolve_bn_impl
    from nas_cli.spaces.darts_eval import resolve_branch_streams
    from nas_cli.spaces.triton_support import resolve_kernel_impl

    rt = cfg.runtime
    device = resolve_device(rt.device)
    cuda = device.type == "cuda"
    graphs_enabled(rt.cuda_graphs, None if cuda else NO_CUDA)
    resolve_branch_streams(rt.get("branch_streams", "auto"), device, compiled_cells=False, replayed=False)
    for key in ("depthwise", "pointwise", "mixing"):
        resolve_kernel_impl(str(rt[key]), device, f"runtime.{key}")
    resolve_bn_impl(str(rt.batchnorm), device, replayed=False)
    return device
