"""Shared test helpers: compose nas_cli configs in-process (fast) and find optional data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR = ROOT.parent / "shared" / "data" / "cifar10"

# tiny, fast settings for CPU tests (on top of experiment=demo)
TINY = [
    "experiment=demo",
    "dataset.num_train=192",
    "dataset.num_test=128",
    "dataset.image_size=8",
    "search_space.init_channels=8",
    "search_space.layers=3",
    "search.epochs=2",
    "search.batch_size=32",
    "search.log_every=1000",
    "runtime.device=cpu",
]


def make_cfg(overrides: Sequence[str] = ()) -> DictConfig:
    import nas_cli.cli  # noqa: F401  (registers schemas and resolvers)

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


@pytest.fixture
def tiny_cfg():
    def build(*extra: str) -> DictConfig:
        return make_cfg([*TINY, *extra])

    return build
