"""Settings that depend on the machine are checked before a stage writes anything: a wrong one costs
one line, prints no stage header, creates no directory and deletes no earlier run's files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import make_cfg
from nas_cli.errors import ConfigError
from nas_cli.runtime.preflight import check_device_settings
from nas_cli.stages.protocol import run_eval_stage, run_pipeline, run_retrain_stage
from nas_cli.stages.search import OUTPUT_FILES, run_search

CPU = ["experiment=demo", "runtime.device=cpu"]


@pytest.mark.parametrize("setting,message", [
    ("runtime.cuda_graphs=true", "runtime.cuda_graphs=true but CUDA graphs need a CUDA device"),
    ("runtime.branch_streams=true", "runtime.branch_streams=true is not possible here: no CUDA device"),
    ("runtime.depthwise=triton", "runtime.depthwise=triton is not possible here"),
    ("runtime.pointwise=triton", "runtime.pointwise=triton is not possible here"),
    ("runtime.mixing=triton", "runtime.mixing=triton is not possible here"),
    ("runtime.batchnorm=triton", "runtime.batchnorm=triton needs Triton and a CUDA device"),
])
def test_settings_that_need_cuda_are_refused_on_cpu(setting: str, message: str, monkeypatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # the interpreter would make Triton valid on CPU
    with pytest.raises(ConfigError, match=message):
        check_device_settings(make_cfg([*CPU, setting]))


def test_the_defaults_pass_on_cpu() -> None:
    assert check_device_settings(make_cfg(CPU)) == torch.device("cpu")


@pytest.mark.parametrize("stage,run", [
    ("retrain", run_retrain_stage), ("eval", run_eval_stage), ("pipeline", run_pipeline),
])
def test_protocol_stages_write_nothing_for_a_wrong_device_setting(tmp_path: Path, capsys, stage, run) -> None:
    cfg = make_cfg([*CPU, f"stage={stage}", "stage.arch=DARTS_V2", "stage.archs=[DARTS_V2]",
                    "runtime.branch_streams=true"])
    with pytest.raises(ConfigError, match="branch_streams=true is not possible here"):
        run(cfg, tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert "stage" not in capsys.readouterr().out  # no stage header either


@pytest.mark.parametrize("setting,message", [
    ("runtime.cuda_graphs=true", "CUDA graphs need a CUDA device"),
    ("search.epochs=0", "search.epochs must be >= 1"),
    ("runtime.hard_forward=sometimes", "runtime.hard_forward must be auto, selected or masked"),
])
def test_resume_false_keeps_the_earlier_run_when_the_new_config_is_refused(tmp_path: Path, setting: str,
                                                                        message: str) -> None:
    for name in OUTPUT_FILES:
        (tmp_path / name).write_text("earlier run")
    cfg = make_cfg([*CPU, "method=gdas", "resume=false", setting])
    with pytest.raises(ConfigError, match=message):
        run_search(cfg, tmp_path)
    assert all((tmp_path / name).read_text() == "earlier run" for name in OUTPUT_FILES)
