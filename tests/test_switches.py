"""runtime.kernel_switches: the fast path's per-kernel on/off switches, set from the config."""

from __future__ import annotations

import importlib
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from nas_cli.errors import ConfigError
from nas_cli.runtime.switches import SWITCHES, apply_switches, check_switches, current_switches
from tests.conftest import make_cfg
from tests.test_nb201 import NB_TINY


def test_registered_defaults_are_the_modules_own() -> None:
    """Each switch names a real module constant whose value in the source is the registered default, so
    applying the defaults never changes what a fresh import runs."""
    for name, s in SWITCHES.items():
        module = importlib.import_module(f"nas_cli.spaces.{s.module}")
        source = Path(module.__file__).read_text()
        found = re.findall(rf"^{s.attr} = (True|False)\s*$", source, flags=re.M)
        assert found == [str(s.default)], (name, found)


def test_apply_sets_overrides_and_restores_the_rest() -> None:
    from nas_cli.spaces import conv_merge, nb201_fused

    try:
        table = apply_switches({"select_convs": False, "unmerge_kernel": False})
        assert nb201_fused.SELECT_CONVS is False and conv_merge.UNMERGE_KERNEL is False
        assert table == current_switches() and sum(not v for v in table.values()) == 2
        # the next job of the same process (Hydra's basic launcher) starts from the defaults again
        assert apply_switches({}) == {n: s.default for n, s in SWITCHES.items()} == current_switches()
        assert nb201_fused.SELECT_CONVS is True and conv_merge.UNMERGE_KERNEL is True
    finally:
        apply_switches({})


@pytest.mark.parametrize("overrides,fragment", [
    ({"no_such_switch": True}, "is not a kernel switch; known: select_convs"),
    ({"select_convs": "yes"}, "must be true or false"),
    ({"select_convs": 1}, "must be true or false"),
])
def test_bad_switches_are_one_line_config_errors(overrides: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as exc:
        check_switches(overrides)
    assert fragment in str(exc.value) and "\n" not in str(exc.value)


def test_config_validation_checks_the_switches() -> None:
    from nas_cli.config import validate

    validate(make_cfg(["+runtime.kernel_switches.select_convs=false"]))
    with pytest.raises(ConfigError, match="not a kernel switch"):
        validate(make_cfg(["+runtime.kernel_switches.selct_convs=false"]))


def test_a_run_builds_with_its_switches(tmp_path: Path) -> None:
    """The search stage applies the run's table before it builds the supernet: the masked GDAS supernet
    takes the selected-conv form only with the switch on, and a run without it gets the default back."""
    from nas_cli.spaces import nb201_fused
    from nas_cli.stages.search import build_run

    gdas = [*NB_TINY, "method=gdas", "runtime.hard_forward=masked"]
    try:
        off = build_run(make_cfg([*gdas, "+runtime.kernel_switches.select_convs=false"]), tmp_path / "off")
        assert off.hard_forward == "masked" and off.model._select_convs is False
        assert nb201_fused.SELECT_CONVS is False
        on = build_run(make_cfg(gdas), tmp_path / "on")
        assert on.model._select_convs is True and nb201_fused.SELECT_CONVS is True
    finally:
        apply_switches({})


def test_switches_do_not_change_the_resume_fingerprint() -> None:
    from nas_cli.runtime.checkpoint import config_fingerprint

    a, _ = config_fingerprint(make_cfg(NB_TINY))
    b, _ = config_fingerprint(make_cfg([*NB_TINY, "+runtime.kernel_switches.select_convs=false"]))
    assert a == b


# ------------------------------------------------------------------ the search log's explanations

def _run(sampling: str = "hard", execution: dict | None = None, space: dict | None = None) -> SimpleNamespace:
    return SimpleNamespace(relax=SimpleNamespace(sampling=sampling), num_classes=10,
                           execution=execution or {}, cfg=SimpleNamespace(search_space=space or {}))


def test_the_first_epoch_says_what_it_includes() -> None:
    from nas_cli.stages.search import _warmup_note

    assert _warmup_note(_run(execution={"cuda_graphs": False, "batchnorm": "native"})) == ""
    note = _warmup_note(_run(execution={"cuda_graphs": True, "batchnorm": "triton"}))
    assert "Triton kernel compilation and CUDA-graph capture" in note
    assert _warmup_note(_run(execution={"cuda_graphs": True, "batchnorm": "function2"})) == (
        "(first epoch: includes CUDA-graph capture, once per run)")


def test_a_one_hot_methods_huge_validation_loss_is_explained() -> None:
    from nas_cli.stages.search import _stale_bn_loss, _stale_bn_note

    chance = math.log(10)
    assert not _stale_bn_loss(_run(), 5 * chance)  # a poor but ordinary loss
    assert _stale_bn_loss(_run(), 224.7)  # the sixteenth session's real NB201 GDAS run, epoch 8
    assert not _stale_bn_loss(_run(sampling="soft"), 224.7)  # a mixture: no stale estimates; say nothing
    note = _stale_bn_note(_run(space={"track_running_stats": True}), 224.7)
    assert note.startswith("val_loss 224.7:") and "search_space.track_running_stats=false" in note
    assert "track_running_stats" not in _stale_bn_note(_run(), 224.7)  # a space without the setting


def test_the_search_log_explains_a_stale_bn_loss_once(tmp_path: Path, capsys, monkeypatch) -> None:
    """The note is printed by the epoch loop once per invocation, after the first validation that shows
    the symptom (forced here: a tiny CPU GDAS search's losses are ordinary)."""
    import torch

    from nas_cli.stages import search

    seen: list[float] = []
    monkeypatch.setattr(search, "_stale_bn_loss", lambda run, v: seen.append(v) is None)
    monkeypatch.setattr(search.console, "width", 1000)  # one line per message, whatever the terminal
    torch.set_num_threads(1)
    search.run_search(make_cfg([*NB_TINY, "method=gdas", "search.epochs=2"]), tmp_path)
    out = capsys.readouterr().out
    assert len(seen) == 1 and out.count("it is not a diverged search") == 1, out
    assert "search_space.track_running_stats=false" in out
    assert "first epoch: includes" not in out  # a CPU run: no Triton, no graph capture
