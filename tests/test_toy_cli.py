"""The bilevel testbed through the main CLI: ``nas-search experiment=toy/<problem>`` (stage=toy) and
``nas-report`` on its run directory.  In-process Hydra runs on CPU (seconds each)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from nas_cli.cli import search_app

TOY_DIR = Path(__file__).resolve().parents[1] / "conf" / "experiment" / "toy"
BILEVEL = ["bilevel", "bilevel_unrolled", "f2ba", "moreau"]


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _search(monkeypatch, *args: str) -> int:
    """Run the ``nas-search`` Hydra app in-process; returns its exit code."""
    monkeypatch.setattr(sys, "argv", ["nas-search", *args])
    try:
        search_app()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_every_toy_preset_selects_the_toy_stage() -> None:
    from tests.conftest import make_cfg

    names = sorted(p.stem for p in TOY_DIR.glob("*.yaml"))
    assert names == ["activation", "quadratic"]
    for name in names:
        cfg = make_cfg([f"experiment=toy/{name}"])
        assert cfg.stage.name == "toy" and cfg.experiment.problem == name
        # the preset compares every objective with Adam and EG unless a group is chosen on the command line
        assert list(cfg.stage.objectives) == ["single_level", *BILEVEL]
        assert list(cfg.stage.optimizers) == ["adam", "exp_grad"]


def test_quadratic_preset_compares_all_objectives_and_report_reads_it(monkeypatch, tmp_path: Path, capsys) -> None:
    out = tmp_path / "quad"
    # every objective (the preset's default); one optimizer keeps the test short
    assert _search(monkeypatch, "experiment=toy/quadratic", "stage.optimizers=[exp_grad]",
                   f"hydra.run.dir={out}") == 0
    s = _summary(out)
    assert s["stage"] == "toy" and s["kind"] == "comparison" and s["planted"] == "map1"
    assert s["objectives"] == ["single_level", *BILEVEL] and s["optimizers"] == ["exp_grad"]
    assert len(s["rows"]) == 5
    for row in s["rows"]:  # as in test_objectives: every objective and optimizer finds the planted map
        assert row["recovered"] and row["selected"] == "map1" and row["p_planted"] > 0.75, row
        assert row["upper_loss"] < 3 * s["optimum_upper_loss"] + 1e-3, row
        assert row["step_ms"] > 0
        # hypergradient error vs the closed form: first order misses the implicit term, F2BA/Moreau much less
        assert (row["hypergrad_rel_err"] is None) == (row["objective"] == "single_level"), row
        series = [json.loads(line) for line in (out / row["series"]).read_text().splitlines()]
        assert len(series) == s["steps"] == 300 and series[-1]["upper_loss"] == row["upper_loss"]
    err = {(r["optimizer"], r["objective"]): r["hypergrad_rel_err"] for r in s["rows"]}
    assert err[("exp_grad", "f2ba")] < 0.5 * err[("exp_grad", "bilevel")]
    for ext in ("png", "svg"):
        assert (out / f"upper_loss_quadratic.{ext}").stat().st_size > 1000
    assert "| exp_grad | f2ba |" in (out / "objectives_quadratic.md").read_text()
    printed = capsys.readouterr().out
    assert "Objectives on the quadratic testbed" in printed  # the run prints the results table

    rep = tmp_path / "rep"
    from nas_cli.report import main as report_main

    assert report_main([str(out), "--out", str(rep)]) == 0
    printed = capsys.readouterr().out
    assert "Objectives on the quadratic testbed" in printed and "map1" in printed
    md = (rep / "objectives_quadratic.md").read_text()
    assert "| exp_grad | single_level |" in md and "| exp_grad | moreau |" in md
    assert (rep / "upper_loss_quadratic.svg").stat().st_size > 1000


def test_activation_preset_recovers_the_planted_activation(monkeypatch, tmp_path: Path) -> None:
    out = tmp_path / "act"
    assert _search(monkeypatch, "experiment=toy/activation", "stage.optimizers=[adam]",
                   f"stage.objectives=[{','.join(BILEVEL)}]", f"hydra.run.dir={out}") == 0
    s = _summary(out)
    assert s["planted"] == "sin" and s["optimum_upper_loss"] is None and len(s["rows"]) == 4
    for row in s["rows"]:  # as in test_objectives: every bilevel objective recovers sin from the validation split
        assert row["hypergrad_rel_err"] is None  # no closed form for this problem
        assert row["selected"] == "sin" and row["recovered"], row


def test_objective_override_runs_one_objective_without_image_data(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    # a dataset that cannot be loaded: toy runs never touch the image pipeline
    args = ["experiment=toy/quadratic", "objective=f2ba", "optimizer=exp_grad", "experiment.steps=40",
            "stage.settle_steps=20", "objective.lambda0=50", "dataset=cifar10", "dataset.root=no_such_dir"]
    assert _search(monkeypatch, *args) == 0
    runs = list((tmp_path / "outputs" / "toy").glob("quadratic-*/summary.json"))
    assert len(runs) == 1 and "objective=f2ba" in runs[0].parent.name  # its own run dir
    s = json.loads(runs[0].read_text())
    assert [(r["optimizer"], r["objective"]) for r in s["rows"]] == [("exp_grad", "f2ba")]
    assert s["steps"] == 40 and "objective.lambda0=50" in s["overrides"]
    assert "dataset=cifar10" in s["overrides"]


def test_toy_stage_without_a_preset_is_a_one_line_error(monkeypatch, tmp_path: Path, capsys) -> None:
    assert _search(monkeypatch, "stage=toy", f"hydra.run.dir={tmp_path}") == 2
    err = capsys.readouterr().err
    assert "experiment=toy/<problem>" in err and "Traceback" not in err
