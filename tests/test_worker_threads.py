"""The suite's xdist workers share the cores instead of each spinning threads on all of them."""

from __future__ import annotations

import os

import torch

from conftest import WORKER_THREADS


def test_xdist_workers_take_their_share_of_the_cores() -> None:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers < 2:
        assert WORKER_THREADS is None  # one process: torch keeps its own default
        return
    if WORKER_THREADS is None:  # the user set OMP_NUM_THREADS: theirs is kept
        assert "OMP_NUM_THREADS" in os.environ
        return
    assert WORKER_THREADS == max(1, (os.cpu_count() or 1) // workers)
    assert torch.get_num_threads() == WORKER_THREADS
    assert os.environ["OMP_NUM_THREADS"] == str(WORKER_THREADS)  # CLI subprocesses inherit it
