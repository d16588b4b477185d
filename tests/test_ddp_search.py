"""Data-parallel search (``torchrun``, gloo on CPU): 2 processes against 1.

One ``torchrun --nproc_per_node 2`` launch of ``tests/ddp_worker.py`` per test module;
the 1-process references run in-process.  What is checked and why:

* **Ranks agree bit for bit**: architecture parameters, weights and the genotype after
  steps and after a whole search (gradients are averaged by one all-reduce whose result
  is the same bits on every rank), and only rank 0 writes files.
* **2 processes == 1 process on the same global batches**, to float tolerance, for the
  gradients and the parameters after 2 steps.  The supernet is in eval mode for this
  check: BN then uses running statistics, the batch loss is a mean of per-example
  losses, and the average of the two shard gradients *is* the global-batch gradient
  (observed relative error ~1e-7; asserted 1e-4).
* **BN in training mode** (``runtime.sync_bn=true``, the default): statistics over the global
  batch of both ranks, so the 2-rank steps equal the 1-process steps too -- gradients, weights
  and BN running statistics -- and a whole 2-rank search ends with the 1-process architecture
  and genotype (to float tolerance).  With ``runtime.sync_bn=false`` each rank normalises its
  8 images alone (plain DDP): the steps measurably differ from the 1-process ones.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from nas_cli.errors import ConfigError
from nas_cli.runtime import distributed as dist

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ddp_worker as W  # noqa: E402

FAST_OBJECTIVES = ("bilevel", "bilevel_unrolled")
SLOW_OBJECTIVES = ("single_level", "f2ba", "moreau")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torchrun(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "1",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _launch(out: Path, objectives: tuple[str, ...], search: bool) -> list[dict[str, Any]]:
    _torchrun([str(ROOT / "tests" / "ddp_worker.py"), str(out), ",".join(objectives),
               *(["search"] if search else [])])
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1)]


@pytest.fixture(autouse=True)
def one_thread():
    """The workers run with OMP_NUM_THREADS=1; so do the in-process references (and on a busy
    2-core machine 2 intra-op threads make these tiny steps many times slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return _launch(tmp_path_factory.mktemp("ddp"), FAST_OBJECTIVES, search=True)


def _rel(xs: list[torch.Tensor], ys: list[torch.Tensor]) -> float:
    return max(float((x - y).norm() / y.norm().clamp_min(1e-12)) for x, y in zip(xs, ys))


def _assert_ranks_identical(r0: dict[str, Any], r1: dict[str, Any]) -> None:
    assert r0["arch"].keys() == r1["arch"].keys()
    for k in r0["arch"]:
        assert torch.equal(r0["arch"][k], r1["arch"][k]), k
    for a, b in zip(r0.get("weights", []), r1.get("weights", [])):
        assert torch.equal(a, b)


def _assert_matches_one_process(two: dict[str, Any], one: dict[str, Any]) -> None:
    assert _rel(two["arch_grads"], one["arch_grads"]) < 1e-4
    assert _rel(two["weights"], one["weights"]) < 1e-5
    moved = max(float((one["arch"][k] - one["initial"][k]).abs().max()) for k in one["arch"])
    assert moved > 1e-4  # the steps changed the architecture far more than the tolerance below
    for k in one["arch"]:
        torch.testing.assert_close(two["arch"][k], one["arch"][k], rtol=1e-4, atol=1e-6)


def test_ranks_hold_identical_state(two_ranks: list[dict[str, Any]]) -> None:
    r0, r1 = two_ranks
    assert (r0["rank"], r1["rank"], r0["world_size"]) == (0, 1, 2)
    for o in FAST_OBJECTIVES:
        _assert_ranks_identical(r0["steps"][o], r1["steps"][o])
    _assert_ranks_identical(r0["search"], r1["search"])
    assert r0["search"]["genotype"] == r1["search"]["genotype"]
    assert r0["search"]["world_size"] == 2


def test_only_rank_zero_writes(two_ranks: list[dict[str, Any]]) -> None:
    r0, r1 = two_ranks
    assert r1["search"]["writes"] == []
    assert {"checkpoint.pt", "metrics.jsonl", "genotype.json", "summary.json"} <= set(r0["search"]["writes"])


@pytest.mark.parametrize("objective", FAST_OBJECTIVES)
def test_two_ranks_equal_one_process_step(two_ranks: list[dict[str, Any]], objective: str) -> None:
    one = W.step_check(objective)
    two = two_ranks[0]["steps"][objective]
    _assert_matches_one_process(two, one)


def test_two_ranks_equal_one_process_with_training_mode_bn(two_ranks: list[dict[str, Any]]) -> None:
    one = W.step_check("bilevel", train_bn=True)
    two = two_ranks[0]["steps_train"]
    _assert_ranks_identical(two, two_ranks[1]["steps_train"])
    _assert_matches_one_process(two, one)
    assert _rel(two["buffers"], one["buffers"]) < 1e-5  # running mean/var of the global batches


def test_per_rank_bn_is_not_the_one_process_math(two_ranks: list[dict[str, Any]]) -> None:
    """runtime.sync_bn=false: each rank normalises its shard alone, so the result differs (the
    check above would fail without the synchronisation)."""
    one = W.step_check("bilevel", train_bn=True)
    plain = two_ranks[0]["steps_train_plain"]
    _assert_ranks_identical(plain, two_ranks[1]["steps_train_plain"])
    assert _rel(plain["arch_grads"], one["arch_grads"]) > 1e-3
    assert _rel(plain["buffers"], one["buffers"]) > 1e-3


def test_two_rank_evaluation_training_equals_one_process(two_ranks: list[dict[str, Any]], tmp_path: Path) -> None:
    """The stage-2/3 trainer under DDP with synchronised BN: the same weights and BN statistics
    after two steps as one process on the same global batches (BN in training mode)."""
    one = W.eval_check(tmp_path / "one")
    two = two_ranks[0]["eval"]
    for a, b in zip(two["weights"], two_ranks[1]["eval"]["weights"]):
        assert torch.equal(a, b)
    assert _rel(two["weights"], one["weights"]) < 1e-5
    assert _rel(two["buffers"], one["buffers"]) < 1e-5


def test_two_rank_search_equals_one_process(two_ranks: list[dict[str, Any]], tmp_path: Path) -> None:
    one = W.search(tmp_path / "one")
    two = two_ranks[0]["search"]
    assert one["world_size"] == 1
    for k in one["initial"]:
        assert torch.equal(one["initial"][k], two["initial"][k])
    moved = max(float((one["arch"][k] - one["initial"][k]).abs().max()) for k in one["arch"])
    assert moved > 1e-3
    for k in one["arch"]:
        torch.testing.assert_close(two["arch"][k], one["arch"][k], rtol=1e-3, atol=1e-5)
    assert two["genotype"] == one["genotype"]


@pytest.mark.slow
def test_other_objectives_under_two_ranks(tmp_path: Path) -> None:
    r0, r1 = _launch(tmp_path, SLOW_OBJECTIVES, search=False)
    for o in SLOW_OBJECTIVES:
        _assert_ranks_identical(r0["steps"][o], r1["steps"][o])
        _assert_matches_one_process(r0["steps"][o], W.step_check(o))


@pytest.mark.slow
def test_torchrun_cli_search(tmp_path: Path) -> None:
    """The real entry point: ``torchrun -m nas_cli``; rank 0's files, then an idempotent rerun."""
    import json

    out = tmp_path / "run"
    args = ["-m", "nas_cli", *W.OVERRIDES, f"hydra.run.dir={out}"]
    _torchrun(args)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["status"] == "complete"
    assert json.loads((out / "genotype.json").read_text()) == summary["genotype"]
    assert not list(out.glob(".*.tmp"))
    proc = _torchrun(args)  # complete: both ranks report it and exit without training
    assert "already complete" in proc.stdout


# ---------------------------------------------------------------------------- helpers, in one process

def test_helpers_split_and_check_batches() -> None:
    two = dist.DistContext(rank=1, world_size=2)
    x, y = torch.arange(8.0).reshape(4, 2), torch.arange(4)
    assert torch.equal(dist.shard(x, y, two)[1], torch.tensor([2, 3]))
    assert torch.equal(dist.shard_rows(torch.arange(3), two), torch.tensor([2]))
    assert dist.shard_rows(torch.arange(1), two).numel() == 0
    dist.check_divisible(16, "search.batch_size", two)
    with pytest.raises(ConfigError, match="search.batch_size=15 is not divisible by the 2 processes"):
        dist.check_divisible(15, "search.batch_size", two)
    dist.check_divisible(15, "search.batch_size", dist.DistContext())


def test_evaluate_skips_empty_shards() -> None:
    from nas_cli.stages.common import evaluate

    batches = [(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)), (torch.zeros(2, 3), torch.tensor([0, 1]))]
    loss, acc = evaluate(lambda x: torch.zeros(x.shape[0], 3), batches, torch.device("cpu"))
    assert acc == 0.5 and abs(loss - float(torch.log(torch.tensor(3.0)))) < 1e-6
