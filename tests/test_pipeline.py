"""Stages 2/3, the pipeline, the eval-network trainer, job pool, nas-report and nas-arch (CPU, tiny sizes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nas_cli.errors import ConfigError
from nas_cli.report import Run
from nas_cli.runtime.io import atomic_save_npz, atomic_write_json, atomic_write_jsonl, read_jsonl
from nas_cli.spaces.genotypes import get_genotype
from nas_cli.stages.protocol import rank_candidates, run_eval_stage, run_pipeline
from nas_cli.stages.train_eval import EvalJob, EvalTrainer, drop_path_prob, eval_loss, train_eval_network
from tests.conftest import ROOT, TINY, make_cfg

# tiny evaluation-network settings on top of TINY
TRAIN = ["train.epochs=2", "train.batch_size=32", "train.init_channels=4", "train.layers=3",
         "train.log_every=1000", "train.cutout=4"]


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _cfg(*extra: str):
    return make_cfg([*TINY, *TRAIN, *extra])


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "epoch_time"} for r in rows]


# ---------------------------------------------------------------------------- training semantics

def test_drop_path_schedule_and_aux_weight() -> None:
    assert drop_path_prob(0.3, 0, 600) == 0.0
    assert drop_path_prob(0.3, 300, 600) == pytest.approx(0.15)
    assert drop_path_prob(0.3, 599, 600) == pytest.approx(0.3 * 599 / 600)
    y = torch.tensor([0, 1])
    main, aux = torch.randn(2, 3), torch.randn(2, 3)
    ce = torch.nn.functional.cross_entropy
    assert eval_loss(main, aux, y, 0.4) == pytest.approx(float(ce(main, y) + 0.4 * ce(aux, y)))
    assert eval_loss(main, None, y, 0.4) == pytest.approx(float(ce(main, y)))


def test_trainer_applies_drop_path_schedule_and_aux_head(tmp_path: Path, monkeypatch) -> None:
    cfg = _cfg("train.epochs=4", "train.drop_path=0.4", "train.auxiliary_weight=0.4")
    seen_p, seen_aux = [], []
    import nas_cli.stages.train_eval as te

    orig = te.eval_loss

    def spy(logits, logits_aux, y, w):
        seen_aux.append((logits_aux is not None, w))
        return orig(logits, logits_aux, y, w)

    monkeypatch.setattr(te, "eval_loss", spy)
    orig_epoch = EvalTrainer.train_epoch

    def spy_epoch(self, epoch):
        out = orig_epoch(self, epoch)
        seen_p.append(self.model.drop_path_prob)
        return out

    monkeypatch.setattr(EvalTrainer, "train_epoch", spy_epoch)
    s = train_eval_network(cfg, EvalJob("darts_v2", get_genotype("darts_v2"), 0, 0.0, True), tmp_path)
    assert seen_p == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert seen_aux and all(a and w == pytest.approx(0.4) for a, w in seen_aux)
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["drop_path"] for r in rows] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert s["test_acc"] is not None and s["val_acc"] is None and s["params"] > 0
    # no auxiliary head when its weight is 0
    seen_aux.clear()
    train_eval_network(_cfg("train.epochs=1", "train.auxiliary_weight=0"),
                       EvalJob("darts_v2", get_genotype("darts_v2"), 0, 0.0, True), tmp_path / "noaux")
    assert seen_aux and not any(a for a, _ in seen_aux)


def test_eval_trainer_resume_is_exact(tmp_path: Path) -> None:
    job = EvalJob("pcdarts", get_genotype("pcdarts"), 3, 0.25, False, "eval")
    full = train_eval_network(_cfg("train.epochs=3", "train.drop_path=0.2"), job, tmp_path / "full")
    part = train_eval_network(_cfg("train.epochs=3", "train.drop_path=0.2", "train.stop_after=1"), job, tmp_path / "r")
    assert part["status"] == "partial" and not (tmp_path / "r/summary.json").exists()
    mid = train_eval_network(_cfg("train.epochs=3", "train.drop_path=0.2"), job, tmp_path / "r", until=2)
    assert mid["status"] == "partial" and mid["epoch"] == 2
    resumed = train_eval_network(_cfg("train.epochs=3", "train.drop_path=0.2"), job, tmp_path / "r")
    assert _strip(read_jsonl(tmp_path / "r/metrics.jsonl")) == _strip(read_jsonl(tmp_path / "full/metrics.jsonl"))
    a = torch.load(tmp_path / "full/checkpoint.pt", weights_only=True)["trainer"]["model"]
    b = torch.load(tmp_path / "r/checkpoint.pt", weights_only=True)["trainer"]["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert resumed["val_acc"] == full["val_acc"]
    # finished: not redone; different settings: refused
    before = (tmp_path / "r/checkpoint.pt").stat().st_mtime_ns
    train_eval_network(_cfg("train.epochs=3", "train.drop_path=0.2"), job, tmp_path / "r")
    assert (tmp_path / "r/checkpoint.pt").stat().st_mtime_ns == before
    with pytest.raises(ConfigError, match="different settings"):
        train_eval_network(_cfg("train.epochs=4", "train.drop_path=0.2"), job, tmp_path / "r")


# ---------------------------------------------------------------------------- stage 2 selection

def test_selection_uses_validation_not_test() -> None:
    """Candidate a is best on test, b on the held-out split: stage 2 must pick b."""
    records = {
        "a": [{"epoch": 1, "val_acc": 0.50, "test_acc": 0.90}, {"epoch": 2, "val_acc": 0.60, "test_acc": 0.95}],
        "b": [{"epoch": 1, "val_acc": 0.70, "test_acc": 0.10}, {"epoch": 2, "val_acc": 0.80, "test_acc": 0.20}],
        "c": [{"epoch": 1, "val_acc": 0.65, "test_acc": 0.99}, {"epoch": 2, "val_acc": 0.55, "test_acc": 0.99}],
    }
    assert [n for n, _ in rank_candidates(records, "val_acc")] == ["b", "a", "c"]
    assert [n for n, _ in rank_candidates(records, "val_acc", epoch=1)] == ["b", "c", "a"]
    with pytest.raises(ConfigError, match="held-out"):
        rank_candidates(records, "test_acc")


def test_eval_stage_never_reads_test_and_early_elimination(tmp_path: Path, monkeypatch) -> None:
    """3 candidates, prune at epoch 1 keeping 2: the eliminated one stops at epoch 1; no test metrics exist."""
    cfg = _cfg("stage=eval", "stage.archs=[darts_v2,pcdarts,gaea_pcdarts]", "stage.prune_at_epoch=1",
               "stage.keep_top_k=2", "stage.val_portion=0.25")
    sel = run_eval_stage(cfg, tmp_path)
    assert len(sel["ranking"]) == 2 and len(sel["eliminated"]) == 1
    elim = sel["eliminated"][0]["name"]
    assert len(read_jsonl(tmp_path / elim / "metrics.jsonl")) == 1
    assert not (tmp_path / elim / "summary.json").exists()
    for c in sel["ranking"]:
        rows = read_jsonl(tmp_path / c["name"] / "metrics.jsonl")
        assert len(rows) == 2 and all(r["test_acc"] is None and r["val_acc"] is not None for r in rows)
    assert sel["selected"] == sel["ranking"][0]["name"]
    assert json.loads((tmp_path / "selection.json").read_text())["selected"] == sel["selected"]
    # a survivor's val ranking decides; rerunning redoes nothing
    before = {n: (tmp_path / n / "checkpoint.pt").stat().st_mtime_ns for n in sel["candidates"]}
    again = run_eval_stage(cfg, tmp_path)
    assert again["selected"] == sel["selected"]
    assert before == {n: (tmp_path / n / "checkpoint.pt").stat().st_mtime_ns for n in sel["candidates"]}


# ---------------------------------------------------------------------------- pipeline + report

def test_pipeline_end_to_end_and_report(tmp_path: Path) -> None:
    cfg = _cfg("stage=pipeline", "stage.search_seeds=2", "stage.retrain_seeds=2", "stage.prune_at_epoch=null",
               "stage.val_portion=0.25", "search.epochs=1", "objective.warmup_epochs=0", "train.epochs=1")
    out = tmp_path / "pipe"
    summary = run_pipeline(cfg, out)
    for s in (0, 1):
        assert (out / f"search/seed{s}/summary.json").is_file()
        assert (out / f"retrain/seed{s}/summary.json").is_file()
    assert (out / "eval/selection.json").is_file()
    cands = json.loads((out / "eval/selection.json").read_text())["candidates"]
    assert 1 <= len(cands) <= 2 and all((out / "eval" / n / "summary.json").is_file() for n in cands)
    assert summary["stage"] == "pipeline" and summary["test_error_std"] >= 0
    assert len(json.loads((out / "retrain/summary.json").read_text())["test_errors"]) == 2
    # each training job records what the auto settings resolved to (CPU: eager, NCHW, native kernels)
    assert json.loads((out / "retrain/seed0/summary.json").read_text())["execution"] == {
        "cuda_graphs": False, "compiled": False, "compile_scope": None, "channels_last": False, "depthwise": "native",
        "branch_streams": False, "compile_fallbacks": []}
    table = (out / "report/table1.md").read_text()
    assert "gaea_pcdarts" in table and "±" in table
    for name in ("table1.csv", "table1.tex", "entropy_normal.png", "entropy_normal.svg",
                 "learning_curves.png", "learning_curves.svg"):
        assert (out / "report" / name).is_file(), name
    assert list((out / "report").glob("cell_*_normal.svg"))
    # rerun: every stage is finished, nothing is retrained
    stamp = (out / "retrain/seed0/checkpoint.pt").stat().st_mtime_ns
    run_pipeline(cfg, out)
    assert (out / "retrain/seed0/checkpoint.pt").stat().st_mtime_ns == stamp


def _fixture_search(d: Path, method: str, seed: int, ent: list[float]) -> None:
    g = get_genotype("darts_v2").to_json()
    rows = [{"epoch": i + 1, "train_acc": 0.5 + 0.1 * i, "val_acc": 0.4 + 0.1 * i, "entropy_normal": e,
             "entropy_ops": e} for i, e in enumerate(ent)]
    atomic_write_jsonl(d / "metrics.jsonl", rows)
    atomic_write_json(d / "genotype.json", g)
    atomic_write_json(d / "summary.json", {
        "status": "complete", "stage": "search", "method": method, "search_space": "darts", "dataset": "cifar10",
        "objective": "bilevel", "seed": seed, "tag": "", "genotype": g, "final": {"entropy_ops": ent[-1]},
        "supernet_test_acc": 0.8 + 0.01 * seed, "supernet_params": 1_900_000, "search_gpu_hours": 2.4,
        "search_cpu_hours": 0.0})


def test_nas_report_on_fixture_outputs(tmp_path: Path) -> None:
    for m, ent in (("gaea_pcdarts", [2.0, 1.0, 0.2]), ("pcdarts", [2.07, 2.06, 2.05])):
        for seed in (0, 1):
            _fixture_search(tmp_path / "runs" / m / f"seed{seed}", m, seed, ent)
    out = tmp_path / "rep"
    proc = subprocess.run([sys.executable, "-c", "from nas_cli.report import cli; cli()", str(tmp_path / "runs"),
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    md = (out / "search.md").read_text()
    assert "gaea_pcdarts" in md and "pcdarts" in md and "80.50 ± 0.71" in md
    assert "gaea_pcdarts" in (out / "search.csv").read_text()
    assert r"\pm" in (out / "search.tex").read_text()
    for f in ("entropy_normal.png", "entropy_normal.svg", "search_curves.png", "search_curves.svg"):
        assert (out / f).stat().st_size > 1000
    bad = subprocess.run([sys.executable, "-c", "from nas_cli.report import cli; cli()", str(tmp_path / "nothing")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "not a directory" in bad.stderr and "Traceback" not in bad.stderr


def test_entropy_plot_uniform_reference_uses_each_runs_op_count(tmp_path: Path, monkeypatch) -> None:
    """The dotted 'uniform' line is ln |O| from arch_history.npz: ln 5 on NB201 (not ln 8), one per op count."""
    from nas_cli.report import builtin, plots

    def run(d: Path, method: str, edges: int, ops: int) -> None:
        _fixture_search(d, method, 0, [1.5, 1.0])
        w = np.full((edges, ops), 1.0 / ops, dtype=np.float32)
        atomic_save_npz(d / "arch_history.npz", {"epoch": np.arange(1, 3), "initial_normal": w,
                                                 "normal": np.stack([w, w]), "initial_normal_edges": np.ones(edges)})

    figs: list = []
    monkeypatch.setattr(plots, "_save", lambda fig, stem: figs.append(fig) or [])
    run(tmp_path / "nb201", "nb201-like", 6, 5)
    assert plots.op_count(tmp_path / "nb201") == 5
    builtin.build_search([Run(tmp_path / "nb201", json.loads((tmp_path / "nb201/summary.json").read_text()))],
                         tmp_path / "rep")
    levels = sorted(round(float(ln.get_ydata()[0]), 6) for ln in figs[0].axes[0].lines
                    if ln.get_label().startswith("uniform"))
    assert levels == [round(float(np.log(5)), 6)]
    run(tmp_path / "darts", "darts-like", 14, 8)  # two spaces in one plot: one reference each
    figs.clear()
    plots.entropy_plot({"a": [[{"epoch": 1, "entropy_normal": 1.0}]], "b": [[{"epoch": 1, "entropy_normal": 2.0}]]},
                       tmp_path / "e", num_ops={"a": plots.op_count(tmp_path / "nb201"),
                                                "b": plots.op_count(tmp_path / "darts")})
    levels = sorted(float(ln.get_ydata()[0]) for ln in figs[0].axes[0].lines if ln.get_label().startswith("uniform"))
    assert levels == pytest.approx([np.log(5), np.log(8)])


def test_nas_arch_darts_v2(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", "from nas_cli.report.arch import cli; cli()", "darts_v2",
                           "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "3,349,342" in proc.stdout and "sep_conv_3x3" in proc.stdout
    for cell in ("normal", "reduce"):
        for ext in ("png", "svg"):
            assert (tmp_path / f"darts_v2_{cell}.{ext}").stat().st_size > 1000
    svg = (tmp_path / "darts_v2_normal.svg").read_text()
    assert "sep_conv_3x3" in svg and "dil_conv_3x3" in svg
    bad = subprocess.run([sys.executable, "-c", "from nas_cli.report.arch import cli; cli()", "nope"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown genotype" in bad.stderr


# ---------------------------------------------------------------------------- job pool

def test_job_slots() -> None:
    from nas_cli.runtime.jobs import plan_slots

    assert plan_slots("auto", "cpu") == [] and plan_slots(1, "cpu") == [] and plan_slots(2, "cpu") == [None, None]
    with pytest.raises(ConfigError):
        plan_slots("many", "cpu")


@pytest.mark.slow
def test_job_pool_runs_workers_in_subprocesses(tmp_path: Path) -> None:
    """stage.jobs=2 on CPU: two worker subprocesses; results equal the in-process run."""
    from nas_cli.runtime.jobs import Job, run_jobs

    cfg = _cfg("train.epochs=1")
    jobs = [Job(f"j{s}", "nas_cli.stages.protocol:eval_job", cfg, tmp_path / f"p{s}",
                {"job": EvalJob("darts_v2", get_genotype("darts_v2"), s, 0.25, False, "eval").to_json()})
            for s in (0, 1)]
    res = run_jobs(jobs, 2, "cpu")
    assert [r["status"] for r in res] == ["complete", "complete"]
    inproc = run_jobs([Job("j0", jobs[0].fn, cfg, tmp_path / "i0", jobs[0].kwargs)], "none", "cpu")[0]
    assert inproc["val_acc"] == res[0]["val_acc"]
    assert (tmp_path / "p0/job.log").is_file()
