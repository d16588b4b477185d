"""Shared test helpers: compose nas_cli configs in-process (fast) and find optional data."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Sequence

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from torch.utils._python_dispatch import TorchDispatchMode

os.environ.setdefault("MPLBACKEND", "Agg")


def _share_cores_between_workers() -> int | None:
    """Under pytest-xdist, give each worker (and the CLI subprocesses it starts, through
    OMP_NUM_THREADS) its share of the cores.  Left alone, every worker's torch takes all cores: with
    two workers on CI's two cores the spinning OpenMP threads made tests/test_search.py take 370 s
    instead of 62 s.  A thread count the user set is kept."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers < 2 or "OMP_NUM_THREADS" in os.environ:
        return None
    threads = max(1, (os.cpu_count() or 1) // workers)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    return threads


WORKER_THREADS = _share_cores_between_workers()

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


def assert_searches_match(results: dict, atol: float) -> None:
    """Fused-path vs reference search results ``{True: fused, False: reference}``, each
    ``(genotype, ckpt["arch"], ckpt["model"], summary)``: the same architecture up to ``atol``,
    genotype, checkpoint keys, parameter count and final loss."""
    import json

    import torch

    (g1, a1, m1, s1), (g2, a2, m2, s2) = results[True], results[False]
    assert list(a1) == list(a2)
    for k in a1:
        torch.testing.assert_close(a1[k], a2[k], atol=atol, rtol=1e-3, msg=k)
        # the paths disagree far less than the entries differ, so the genotype comparison means something
        assert float((a1[k] - a2[k]).abs().max()) < 0.1 * float((a1[k] - a1[k].mean()).abs().max()), k
    assert json.dumps(g1, sort_keys=True) == json.dumps(g2, sort_keys=True)
    assert list(m1) == list(m2)  # checkpoints are interchangeable
    assert s1["supernet_params"] == s2["supernet_params"]
    assert abs(s1["final"]["train_loss"] - s2["final"]["train_loss"]) < 1e-3


class OpCount(TorchDispatchMode):
    """ATen ops dispatched inside the block, by name; views are left out (they launch no kernel)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if not func.is_view:
            self.ops[str(func)] += 1
        return func(*args, **(kwargs or {}))
