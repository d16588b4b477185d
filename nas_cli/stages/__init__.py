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


def _eval(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    from nas_cli.stages.protocol import run_eval_stage

    return run_eval_stage(cfg, out_dir)


def _retrain(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    from nas_cli.stages.protocol import run_retrain_stage

    return run_retrain_stage(cfg, out_dir)


def _pipeline(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    from nas_cli.stages.protocol import run_pipeline

    return run_pipeline(cfg, out_dir)


STAGES.add("eval", _eval)
STAGES.add("retrain", _retrain)
STAGES.add("pipeline", _pipeline)


def _toy(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    from nas_cli.stages.toy import run_toy

    return run_toy(cfg, out_dir)


STAGES.add("toy", _toy)

# stage schemas with extra keys (stage.search_dir, stage.keep_top_k, ...) register on import
import nas_cli.stages.protocol  # noqa: E402,F401
import nas_cli.stages.toy  # noqa: E402,F401
