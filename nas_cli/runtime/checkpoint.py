"""Checkpoints: one atomic ``checkpoint.pt`` per run, loadable with
``torch.load(weights_only=True)`` (only tensors and plain Python containers)."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from nas_cli.errors import UserError
from nas_cli.runtime.io import atomic_torch_save

#: config keys that may change between an interrupted run and its resumption
RESUME_IGNORED = ("resume", "runtime.device", "runtime.num_threads", "search.stop_after",
                  "search.log_every", "tag", "experiment", "stage",
                  # how the same arithmetic is executed (layout, kernels, graph replay, compilation;
                  # a fused run's momentum is re-laid out on resume: runtime/optstate.py)
                  "runtime.fused", "runtime.channels_last", "runtime.deterministic", "runtime.cuda_graphs", "runtime.batchnorm",
                  "runtime.depthwise", "runtime.pointwise", "runtime.mixing", "runtime.conv1x1", "runtime.branch_streams", "runtime.hard_forward", "runtime.compile",
                  "runtime.compile_backend", "runtime.compile_mode", "runtime.compile_scope",
                  "runtime.compile_options", "runtime.kernel_switches",
                  # data-parallel execution: like the number of processes, which a resumed run may change
                  "runtime.sync_bn",
                  # stage-2/3 training settings do not affect a search (eval jobs fingerprint them)
                  "train")


def _drop_ignored(data: dict[str, Any]) -> dict[str, Any]:
    for key in RESUME_IGNORED:
        node: Any = data
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(parts[-1], None)
    return data


def config_fingerprint(cfg: DictConfig) -> tuple[str, dict[str, Any]]:
    data = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(data, dict)
    blob = json.dumps(_drop_ignored(data), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16], data


def same_run_config(saved: Any, current: dict[str, Any]) -> bool:
    """Whether a checkpoint's stored config (``config_fingerprint``'s dict when it was written) is
    the current one, judged with the keys resume ignores *now*: a checkpoint written before a key
    joined ``RESUME_IGNORED`` (e.g. ``runtime.deterministic``) still resumes."""
    if not isinstance(saved, dict):
        return False
    dump = lambda d: json.dumps(_drop_ignored(copy.deepcopy(d)), sort_keys=True, default=str)  # noqa: E731
    return dump(saved) == dump(current)


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def config_diff(old: dict[str, Any], new: dict[str, Any], limit: int = 3) -> str:
    a, b = _flatten(old), _flatten(new)
    changed = [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    more = f" (+{len(changed) - limit} more)" if len(changed) > limit else ""
    return "; ".join(changed[:limit]) + more


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_torch_save(path, state)


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise UserError(f"cannot read checkpoint {path} ({type(exc).__name__}); "
                        f"delete it or run with resume=false to start over") from None
