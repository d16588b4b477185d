"""Weight-optimizer state keyed by state_dict names (runtime/optstate.py): a run resumes with
either runtime.fused, and the momentum lands on the same reference parameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_cfg
from nas_cli.errors import ConfigError
from nas_cli.runtime.optstate import load_optimizer_state_by_name, optimizer_state_by_name
from nas_cli.spaces.base import RelaxationSpec
from nas_cli.stages.search import run_search

TINY = ["experiment=demo", "dataset.num_train=192", "dataset.num_test=64", "dataset.image_size=8",
        "search_space.init_channels=8", "search_space.layers=3", "search.batch_size=32", "search.log_every=1000",
        "runtime.device=cpu", "runtime.num_threads=1", "method=gaea_pcdarts", "search.epochs=3",
        "objective.warmup_epochs=0"]


def _stepped(space_cfg: dict, relax: RelaxationSpec, fused: bool, space_name: str) -> tuple[torch.nn.Module, torch.optim.SGD]:
    """A supernet after one SGD step (momentum, weight decay) on a fixed batch and fixed arch weights."""
    from nas_cli.spaces.base import SPACES

    torch.manual_seed(0)
    space = SPACES.get(space_name)(space_cfg)
    net = space.build_supernet(10, 3, relax, fused=fused)
    gen = torch.Generator().manual_seed(1)
    arch = {s.name: torch.rand(s.shape, generator=gen).softmax(-1) for s in space.arch_specs(relax)}
    x = torch.randn(4, 3, 8, 8, generator=gen)
    y = torch.randint(0, 10, (4,), generator=gen)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=3e-4)
    torch.nn.functional.cross_entropy(net(x, arch), y).backward()
    opt.step()
    return net, opt


@pytest.mark.parametrize("space_name, space_cfg, relax", [
    ("darts", {"init_channels": 8, "layers": 3}, RelaxationSpec(partial_channels=4, learn_edges=True)),
    ("nb201", {"init_channels": 4, "cells_per_stage": 1}, RelaxationSpec()),
])
def test_momentum_by_name_is_layout_independent(space_name: str, space_cfg: dict, relax: RelaxationSpec) -> None:
    fused, f_opt = _stepped(space_cfg, relax, True, space_name)
    ref, r_opt = _stepped(space_cfg, relax, False, space_name)
    f_named, r_named = optimizer_state_by_name(fused, f_opt), optimizer_state_by_name(ref, r_opt)
    f_mom, r_mom = f_named["momentum_buffer"], r_named["momentum_buffer"]
    params = {k for k, _ in ref.named_parameters()}
    assert set(f_mom) == set(r_mom) == params  # every parameter, under its reference name
    for k in r_mom:  # the fused run's momentum lands on the same reference parameter
        torch.testing.assert_close(f_mom[k], r_mom[k], rtol=1e-4, atol=1e-5, msg=k)

    # fused -> reference layout: positional state equals what the reference optimizer built itself
    sd = load_optimizer_state_by_name(ref, r_opt, f_opt.state_dict(), f_named)
    own = r_opt.state_dict()
    assert sd["param_groups"] == own["param_groups"] and set(sd["state"]) == set(own["state"])
    for i, s in own["state"].items():
        torch.testing.assert_close(sd["state"][i]["momentum_buffer"], s["momentum_buffer"], rtol=1e-4, atol=1e-5)
    # the same layout round-trips exactly
    again = load_optimizer_state_by_name(fused, f_opt, f_opt.state_dict(), f_named)
    for i, s in f_opt.state_dict()["state"].items():
        assert torch.equal(again["state"][i]["momentum_buffer"], s["momentum_buffer"])
    # the parameters themselves are untouched by the translation
    assert all(torch.isfinite(p).all() for p in fused.parameters())


def test_resume_with_the_other_fused_setting(tmp_path: Path) -> None:
    """Stopped after epoch 1 with the fused cells, resumed with the per-edge reference: it continues
    (same fingerprint), and ends where the uninterrupted fused run ends, up to the fused/reference
    rounding gap -- a resume without the momentum would not (checked by dropping it)."""
    full = run_search(make_cfg([*TINY, "runtime.fused=true"]), tmp_path / "full")
    part = run_search(make_cfg([*TINY, "runtime.fused=true", "search.stop_after=1"]), tmp_path / "r")
    assert part["status"] == "partial"
    resumed = run_search(make_cfg([*TINY, "runtime.fused=false"]), tmp_path / "r")
    assert resumed["status"] == "complete" and resumed["genotype"] == full["genotype"]
    assert abs(resumed["final"]["train_loss"] - full["final"]["train_loss"]) < 1e-3
    a, b = np.load(tmp_path / "full/arch_history.npz"), np.load(tmp_path / "r/arch_history.npz")
    for k in a.files:
        np.testing.assert_allclose(a[k], b[k], atol=2e-4, err_msg=k)


def test_old_checkpoint_without_names_asks_for_its_setting(tmp_path: Path) -> None:
    run_search(make_cfg([*TINY, "runtime.fused=true", "search.stop_after=1"]), tmp_path / "r")
    ckpt = torch.load(tmp_path / "r/checkpoint.pt", weights_only=True)
    del ckpt["w_opt_by_name"], ckpt["fused"]  # as written before this feature, which kept runtime.fused
    ckpt["config"]["runtime"]["fused"] = True  # in the checkpoint's config
    torch.save(ckpt, tmp_path / "r/checkpoint.pt")
    with pytest.raises(ConfigError, match="resume it with runtime.fused=true"):
        run_search(make_cfg([*TINY, "runtime.fused=false"]), tmp_path / "r")


def test_unknown_layout_mismatch_is_one_line(tmp_path: Path) -> None:
    run_search(make_cfg([*TINY, "runtime.fused=true", "search.stop_after=1"]), tmp_path / "r")
    ckpt = torch.load(tmp_path / "r/checkpoint.pt", weights_only=True)
    del ckpt["w_opt_by_name"], ckpt["fused"]  # no record of the layout at all
    torch.save(ckpt, tmp_path / "r/checkpoint.pt")
    with pytest.raises(ConfigError, match="does not fit this supernet"):
        run_search(make_cfg([*TINY, "runtime.fused=false"]), tmp_path / "r")
