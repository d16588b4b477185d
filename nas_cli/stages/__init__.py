"""Pipeline stages, looked up by ``stage.name``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig

from nas_cli.registry import Registry

StageFn = Callable[[DictConfig, Path], dict[str, Any]]
STAGES: Registry[StageFn] = Registry("stage")


def _search(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    from nas_cli.stages.search import run_search

    return run_search(cfg, out_dir)


STAGES.add("search", _search)
