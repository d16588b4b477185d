"""Config composition and user-error handling of the nas-search CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nas_cli.config import validate
from nas_cli.errors import ConfigError
from tests.conftest import ROOT, make_cfg

METHODS = ["darts", "pcdarts", "gaea_darts", "gaea_pcdarts"]


def test_method_is_composition() -> None:
    cfg = make_cfg(["method=gaea_pcdarts"])
    assert cfg.optimizer.name == "exp_grad" and cfg.objective.name == "bilevel"
    assert cfg.method.relaxation.parameterization == "simplex"
    assert cfg.method.relaxation.partial_channels == 4 and cfg.method.relaxation.learn_edges
    assert cfg.optimizer.lr == 0.1 and cfg.objective.warmup_epochs == 10 and cfg.search.batch_size == 256
    cfg = make_cfg(["method=pcdarts"])
    assert cfg.optimizer.name == "adam" and cfg.optimizer.lr == 6e-4 and cfg.objective.warmup_epochs == 15
    cfg = make_cfg(["method=darts"])
    assert cfg.search.lr == 0.025 and cfg.search.batch_size == 64 and cfg.method.relaxation.partial_channels == 1


@pytest.mark.parametrize("method", METHODS)
def test_every_method_validates(method: str) -> None:
    validate(make_cfg([f"method={method}"]))
    validate(make_cfg([f"method={method}", "objective=single_level"]))
    validate(make_cfg([f"method={method}", "experiment=demo"]))


def test_command_line_beats_method_choices() -> None:
    cfg = make_cfg(["method=gaea_darts", "objective=single_level", "optimizer.lr=0.3"])
    assert cfg.objective.name == "single_level" and cfg.optimizer.lr == 0.3


@pytest.mark.parametrize("overrides,fragment", [
    (["search.lr=-1"], "search.lr must be > 0"),
    (["objective.train_portion=1.5"], "train_portion must be in (0, 1)"),
    (["objective.train_portion=0"], "train_portion must be in (0, 1)"),
    (["method=gaea_pcdarts", "optimizer=adam"], "cannot update 'simplex'"),
    (["method=darts", "optimizer=exp_grad"], "cannot update 'logits'"),
    (["search.epochs=0"], "search.epochs"),
    (["method.select=best_val", "objective=single_level"], "best_val needs a validation split"),
])
def test_invalid_values_raise_config_error(overrides: list[str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=None) as exc:
        validate(make_cfg(overrides))
    assert fragment in str(exc.value)
    assert "\n" not in str(exc.value)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nas_cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("args,code", [
    (["method=nope"], 1),            # Hydra: unknown option, lists the available ones
    (["search.lr=-1"], 2),           # our validation
    (["search.lrr=0.1"], 1),         # typo in a key: structured-config error
    (["search.epochs=abc"], 1),      # wrong type
    (["objective.train_portion=1.5"], 2),
    (["method=gaea_pcdarts", "optimizer=adam"], 2),
    (["+runtime.kernel_switches.no_such_switch=false"], 2),
])
def test_cli_user_errors_exit_nonzero_without_traceback(args: list[str], code: int, tmp_path) -> None:
    proc = _cli(*args, f"hydra.run.dir={tmp_path}")
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    if code == 2:
        errs = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert len(errs) == 1 and errs[0].startswith("error:"), proc.stderr
    if args[0] == "method=nope":
        assert "gaea_pcdarts" in proc.stderr  # tells the user what exists


def test_cli_help_lists_groups_and_options() -> None:
    proc = _cli("--help")
    assert proc.returncode == 0
    for group in ["search_space", "method", "optimizer", "objective", "dataset", "stage", "experiment"]:
        assert group in proc.stdout
    for option in METHODS + ["exp_grad", "adam", "single_level", "bilevel", "synthetic", "cifar10", "npz", "demo",
                             "paper/darts_cifar10_gaea_pcdarts", "toy/quadratic"]:  # nested presets by path
        assert option in proc.stdout


def test_cli_cfg_job_prints_config() -> None:
    proc = _cli("method=pcdarts", "--cfg", "job")
    assert proc.returncode == 0
    assert "partial_channels: 4" in proc.stdout


def test_non_zero_ranks_do_not_write_hydra_files() -> None:
    from hydra import compose, initialize_config_dir

    from nas_cli.cli import rank_overrides
    from tests.conftest import ROOT

    assert rank_overrides({}) == [] and rank_overrides({"RANK": "0"}) == []
    extra = rank_overrides({"RANK": "1"})
    assert "hydra.output_subdir=null" in extra
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=extra, return_hydra_config=True)
    assert cfg.hydra.output_subdir is None
