"""End-to-end searches on the embedded synthetic dataset (CPU, seconds each)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nas_cli.errors import ConfigError
from nas_cli.runtime.io import read_jsonl
from nas_cli.stages.search import run_search
from tests.conftest import ROOT, TINY

METHODS = ["darts", "pcdarts", "gaea_darts", "gaea_pcdarts"]
OUTPUTS = ["metrics.jsonl", "genotype.json", "arch_history.npz", "checkpoint.pt", "summary.json", "env.json",
           "config.yaml"]


def _strip_times(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "epoch_time"} for r in rows]


def _check_outputs(out: Path, epochs: int, method: str) -> dict:
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))
    for r in rows:
        for key in ("train_loss", "train_acc", "lr", "entropy_ops", "epoch_time", "genotype"):
            assert r[key] is not None, key
        assert math.isfinite(r["train_loss"]) and 0 <= r["train_acc"] <= 1
        assert 0 < r["entropy_ops"] <= math.log(8) + 1e-6
    geno = json.loads((out / "genotype.json").read_text())
    assert len(geno["normal"]) == 8 and len(geno["reduce"]) == 8
    assert all(op != "none" for op, _ in geno["normal"] + geno["reduce"])
    hist = np.load(out / "arch_history.npz")
    assert hist["normal"].shape == (epochs, 14, 8)
    np.testing.assert_allclose(hist["normal"].sum(-1), 1.0, rtol=1e-5)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["method"] == method
    assert summary["genotype"] == geno
    ex = summary["execution"]  # the auto settings resolved (CPU: eager, native kernels; mixtures: no one-hot mode)
    assert ex["cuda_graphs"] is False and ex["batchnorm"] == ex["depthwise"] == ex["pointwise"] == "native"
    assert "hard_forward" not in ex and isinstance(ex["fused_cells"], bool)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == epochs
    return summary


@pytest.mark.parametrize("method", METHODS)
def test_search_each_method_writes_valid_outputs(method: str, tiny_cfg, tmp_path: Path) -> None:
    cfg = tiny_cfg(f"method={method}")
    summary = run_search(cfg, tmp_path)
    s = _check_outputs(tmp_path, 2, method)
    assert s == summary
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert rows[0]["val_acc"] is not None  # bilevel: supernet validated on the arch split
    if method.endswith("pcdarts"):
        assert rows[-1]["entropy_edges"] is not None
        assert "normal_edges" in np.load(tmp_path / "arch_history.npz")


def test_gaea_moves_arch_weights_and_warmup_freezes_them(tiny_cfg, tmp_path: Path) -> None:
    run_search(tiny_cfg("method=gaea_pcdarts", "objective.warmup_epochs=1", "search.epochs=2"), tmp_path)
    hist = np.load(tmp_path / "arch_history.npz")
    np.testing.assert_allclose(hist["normal"][0], hist["initial_normal"])      # warmup epoch: frozen
    assert np.abs(hist["normal"][1] - hist["initial_normal"]).max() > 1e-4     # then EG moves them
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["arch_updates"] for r in rows] == [False, True]


def test_single_level_uses_whole_train_set(tiny_cfg, tmp_path: Path) -> None:
    run_search(tiny_cfg("method=gaea_darts", "objective=single_level"), tmp_path)
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert rows[0]["val_acc"] is None  # no split, no validation


def test_same_seed_same_genotype(tiny_cfg, tmp_path: Path) -> None:
    a = run_search(tiny_cfg("method=darts"), tmp_path / "a")
    b = run_search(tiny_cfg("method=darts"), tmp_path / "b")
    assert a["genotype"] == b["genotype"]
    assert _strip_times(read_jsonl(tmp_path / "a/metrics.jsonl")) == _strip_times(read_jsonl(tmp_path / "b/metrics.jsonl"))
    c = run_search(tiny_cfg("method=darts", "seed=1"), tmp_path / "c")
    assert _strip_times(read_jsonl(tmp_path / "a/metrics.jsonl")) != _strip_times(read_jsonl(tmp_path / "c/metrics.jsonl"))
    del c


def test_resume_after_stop_equals_uninterrupted(tiny_cfg, tmp_path: Path) -> None:
    full = run_search(tiny_cfg("method=gaea_pcdarts", "search.epochs=3"), tmp_path / "full")
    part = run_search(tiny_cfg("method=gaea_pcdarts", "search.epochs=3", "search.stop_after=1"), tmp_path / "r")
    assert part["status"] == "partial"
    assert not (tmp_path / "r/summary.json").exists()
    resumed = run_search(tiny_cfg("method=gaea_pcdarts", "search.epochs=3"), tmp_path / "r")
    assert resumed["genotype"] == full["genotype"]
    assert _strip_times(read_jsonl(tmp_path / "r/metrics.jsonl")) == _strip_times(read_jsonl(tmp_path / "full/metrics.jsonl"))
    a, b = np.load(tmp_path / "full/arch_history.npz"), np.load(tmp_path / "r/arch_history.npz")
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])


def test_resume_after_kill_mid_epoch(tiny_cfg, tmp_path: Path, monkeypatch) -> None:
    """A crash in the middle of epoch 2 loses only that epoch; the resumed run is identical."""
    full = run_search(tiny_cfg("method=darts", "search.epochs=3"), tmp_path / "full")
    from nas_cli.objectives.first_order import FirstOrder

    orig = FirstOrder.step
    calls = {"n": 0}

    def dying_step(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 8:  # 3 steps/epoch (96 weight images of TINY's 192, batch 32): inside epoch 3
            raise KeyboardInterrupt
        return orig(self, *a, **k)

    monkeypatch.setattr(FirstOrder, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        run_search(tiny_cfg("method=darts", "search.epochs=3"), tmp_path / "r")
    monkeypatch.setattr(FirstOrder, "step", orig)
    assert len(read_jsonl(tmp_path / "r/metrics.jsonl")) == 2
    resumed = run_search(tiny_cfg("method=darts", "search.epochs=3"), tmp_path / "r")
    assert resumed["genotype"] == full["genotype"]
    assert _strip_times(read_jsonl(tmp_path / "r/metrics.jsonl")) == _strip_times(read_jsonl(tmp_path / "full/metrics.jsonl"))


def test_resume_rejects_changed_config_and_finished_run_is_not_redone(tiny_cfg, tmp_path: Path) -> None:
    run_search(tiny_cfg("method=darts"), tmp_path)
    with pytest.raises(ConfigError, match="different config"):
        run_search(tiny_cfg("method=darts", "search.lr=0.05"), tmp_path)
    before = (tmp_path / "checkpoint.pt").stat().st_mtime_ns
    again = run_search(tiny_cfg("method=darts"), tmp_path)
    assert again["status"] == "complete"
    assert (tmp_path / "checkpoint.pt").stat().st_mtime_ns == before
    with pytest.raises(ConfigError, match="resume=true"):
        run_search(tiny_cfg("method=darts", "resume=true"), tmp_path / "empty")
    fresh = run_search(tiny_cfg("method=darts", "search.lr=0.05", "resume=false"), tmp_path)
    assert fresh["status"] == "complete"


def test_nan_loss_is_a_clear_error(tiny_cfg, tmp_path: Path) -> None:
    from nas_cli.errors import TrainingDiverged

    with pytest.raises(TrainingDiverged, match="loss became"):
        run_search(tiny_cfg("method=darts", "search.lr=1e30", "search.grad_clip=null"), tmp_path)


@pytest.mark.parametrize("method", METHODS)
def test_cli_demo_preset_runs_each_method(method: str, tmp_path: Path) -> None:
    """`nas-search experiment=demo method=<each> hydra.run.dir=<dir>` (shortened: 1 epoch over an eighth
    of the demo's data, one batch per step kind; `make demo` runs the preset whole)."""
    proc = subprocess.run(
        [sys.executable, "-m", "nas_cli", "experiment=demo", f"method={method}", f"hydra.run.dir={tmp_path}",
         "search.epochs=1", "objective.warmup_epochs=0", "runtime.device=cpu", "dataset.num_train=128",
         "dataset.num_test=64"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "summary.json").is_file()
    assert (tmp_path / ".hydra" / "config.yaml").is_file()
    assert "search result" in proc.stdout


def test_bf16_channels_last_keeps_arch_fp32(tiny_cfg, tmp_path: Path) -> None:
    """bf16 autocast + channels_last on the weight path; the architecture stays fp32."""
    from nas_cli.stages.search import build_run

    cfg = tiny_cfg("method=gaea_pcdarts", "runtime.precision=bf16", "runtime.channels_last=true",
                   "search.epochs=1", "objective.warmup_epochs=0")
    summary = run_search(cfg, tmp_path)
    assert summary["status"] == "complete"
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    for name, t in ckpt["arch"].items():
        assert t.dtype == torch.float32, name
        np.testing.assert_allclose(t.sum(-1).numpy() if t.dim() == 2 else 1.0, 1.0, rtol=1e-5)
    run = build_run(cfg, tmp_path / "b")
    x, y = run.train_stream.sample()
    logits = run.ctx.forward(x, run.arch.weights())
    assert logits.dtype == torch.float32
    convs = [m.weight for m in run.model.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.dim() == 4 and m.weight.shape[-1] > 1]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
