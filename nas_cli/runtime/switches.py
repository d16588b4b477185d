"""Named on/off switches of the fast path's kernels (``runtime.kernel_switches``).

Why: each kernel change of the fast path was measured against the form it replaced, and the replaced form
is kept as the comparison (same values; the tests check both).  The switches are module constants that
the kernels read when a supernet is built or a step runs.  Users comparing the two forms, or working
around a kernel problem on their GPU, set them from the command line instead of editing code:

    nas-search ... +runtime.kernel_switches.select_convs=false

Every run applies the whole table: the registered default unless the config names the switch.  So jobs
of one process (Hydra's basic launcher runs a multirun's jobs in one process) never inherit another job's
setting.  The switches change how a step executes, not what it computes, so a run may resume with others
(``runtime.kernel_switches`` is in ``checkpoint.RESUME_IGNORED``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Mapping

from nas_cli.errors import ConfigError


@dataclass(frozen=True)
class Switch:
    """One module constant of ``nas_cli.spaces``: where it lives, its default, what ``true`` does."""

    module: str
    attr: str
    default: bool
    help: str


SWITCHES: dict[str, Switch] = {
    "select_convs": Switch(
        "nb201_fused", "SELECT_CONVS", True,
        "NB201 masked training forwards (GDAS, RS-WS) run only the conv op each edge selected; false: "
        "every conv op, the unselected ones times exact zeros"),
    "nhwc_convs": Switch(
        "nb201_fused", "NHWC_CONVS", True,
        "the fused NB201 cell's merged convs run on channels_last tensors with the Triton mixing and BN kernels"),
    "owner_masks_at_once": Switch(
        "nb201_fused", "OWNER_MASKS_AT_ONCE", True,
        "a masked NB201 forward gathers every cell's BN-update masks at once instead of per cell"),
    "merge_kernel": Switch(
        "conv_merge", "ENABLED", True,
        "the fused NB201 cell's merged 3x3+1x1 conv weight from one Triton kernel; false: pad and concatenate"),
    "unmerge_kernel": Switch(
        "conv_merge", "UNMERGE_KERNEL", True,
        "the merged conv weight's gradient split into contiguous per-op gradients by one kernel"),
    "source_input_kernels": Switch(
        "source_inputs", "ENABLED", True,
        "each NB201 source's ReLU, skip and average pool in one Triton pass per direction"),
    "split_nhwc_stats": Switch(
        "bn_kernels", "SPLIT_NHWC_STATS", True,
        "the channels_last BN statistics kernel splits each sample's pixels over several programs"),
    "maxpool_kernels": Switch(
        "maxpool", "ENABLED", True,
        "the fused DARTS cells' max pools with Triton kernels (runtime.depthwise=triton steps)"),
    "native_strided_depthwise_forward": Switch(
        "depthwise", "NATIVE_STRIDED_FORWARD", True,
        "strided depthwise forwards keep the native kernel when runtime.depthwise=triton (measured faster)"),
    "nhwc_weight_grad_direct_layout": Switch(
        "depthwise_nhwc", "DIRECT_LAYOUT", True,
        "the channels_last depthwise weight gradient's second partial sum written straight into the weight's "
        "layout; false: into a (taps, C) tensor, then a transposing copy"),
    "native_pointwise_weight_grad": Switch(
        "pointwise", "NATIVE_WEIGHT_GRAD", True,
        "the fused cells' block-diagonal 1x1 weight gradient as a batched matmul (measured faster than Triton)"),
}


def _target(switch: Switch) -> Any:
    return importlib.import_module(f"nas_cli.spaces.{switch.module}")


def check_switches(overrides: Mapping[str, Any] | None) -> dict[str, bool]:
    """The effective table (defaults with ``overrides``); ConfigError for an unknown name or a non-bool."""
    table = {name: s.default for name, s in SWITCHES.items()}
    for name, value in dict(overrides or {}).items():
        if name not in SWITCHES:
            raise ConfigError(f"runtime.kernel_switches.{name} is not a kernel switch; known: {', '.join(SWITCHES)}")
        if not isinstance(value, bool):
            raise ConfigError(f"runtime.kernel_switches.{name} must be true or false, got '{value}'")
        table[name] = value
    return table


def apply_switches(overrides: Mapping[str, Any] | None) -> dict[str, bool]:
    """Set every registered switch (its default unless ``overrides`` names it); returns the table set.
    Call before the supernet or network is built: some switches are read at build time."""
    table = check_switches(overrides)
    for name, value in table.items():
        setattr(_target(SWITCHES[name]), SWITCHES[name].attr, value)
    return table


def current_switches() -> dict[str, bool]:
    """The values the modules hold now (what a run actually executes with)."""
    return {name: bool(getattr(_target(s), s.attr)) for name, s in SWITCHES.items()}
