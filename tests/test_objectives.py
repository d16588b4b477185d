"""Bilevel objectives (unrolled, F2BA, Moreau), XNAS and the known-answer testbed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nas_cli.errors import ConfigError
from nas_cli.objectives import Batch
from nas_cli.runtime.io import read_jsonl
from nas_cli.stages.search import build_run, run_search
from nas_cli.testbed import build_testbed, compose_testbed, hypergradient_estimate, run_testbed

NEW_OBJECTIVES = ["bilevel_unrolled", "f2ba", "moreau"]
ALL_SPLIT = ["bilevel", *NEW_OBJECTIVES]
SMALL = ["dataset.num_train=64", "dataset.num_test=32", "search.batch_size=16", "search.epochs=1",
         "objective.warmup_epochs=0"]


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _estimate(objective: str, overrides: list[str], settle: int) -> dict[str, torch.Tensor]:
    run = build_testbed(compose_testbed("quadratic", objective, "adam", overrides))
    with torch.no_grad():  # an interior architecture where the hypergradient is far from zero
        run.arch.raw["ops"].copy_(torch.tensor([[0.3, -0.2, 0.5, 0.1]]))
    return hypergradient_estimate(run, settle)


# ---------------------------------------------------------------------------- known answers

def test_hypergradients_against_closed_form() -> None:
    """Each estimate vs the quantity it estimates (relative L2 error; tolerances stated inline)."""
    fo = _estimate("bilevel", [], 400)
    assert _rel(fo["estimate"], fo["partial"]) < 1e-5          # first order = partial derivative only ...
    assert _rel(fo["estimate"], fo["exact"]) > 0.2             # ... which misses the implicit term here
    un = _estimate("bilevel_unrolled", [], 400)
    # central finite differences are exact for this quadratic-in-w loss: only round-off remains
    assert _rel(un["estimate"], un["unrolled"]) < 1e-3
    f2 = _estimate("f2ba", ["objective.lambda_schedule=constant", "objective.lambda0=100",
                            "objective.lambda_max=100"], 400)
    assert _rel(f2["estimate"], f2["exact"]) < 0.01            # O(1/lambda) bias, lambda = 100
    mo = _estimate("moreau", ["objective.c0=30", "objective.p=0", "objective.gamma=1", "objective.eta=0.5",
                              "objective.beta=0.5"], 1500)
    assert _rel(mo["estimate"], mo["exact"]) < 0.08            # O(1/c) bias, c = 30
    assert _rel(mo["estimate"], mo["exact"]) < 0.5 * _rel(fo["estimate"], fo["exact"])


@pytest.mark.parametrize("optimizer", ["adam", "exp_grad"])
def test_every_objective_converges_to_planted_optimum(optimizer: str) -> None:
    for objective in ["single_level", *ALL_SPLIT]:
        run = run_testbed(compose_testbed("quadratic", objective, optimizer), log_every=1000)
        probs = run.probs()
        assert int(probs.argmax()) == run.problem.planted, (objective, probs)
        assert probs[run.problem.planted] > 0.75, (objective, probs)
        opt = run.problem.optimum(run.rho)
        assert run.history[-1]["upper_loss"] < 3 * opt + 1e-3, (objective, run.history[-1], opt)
        assert run.history[-1]["upper_loss"] < 0.05 * run.history[0]["upper_loss"]


def test_activation_search_recovers_planted_activation() -> None:
    cfg = compose_testbed("activation", "bilevel", "adam")
    # overparameterised lower level: with the architecture frozen at any of the universal activations
    # the student fits the training split, so the training loss alone cannot identify the teacher's
    # ('square' spans only quadratic forms, 10 dims for 4-d inputs < 32 points: it cannot interpolate)
    for k in range(3):
        run = build_testbed(cfg)
        with torch.no_grad():
            run.arch.raw["ops"].copy_(torch.nn.functional.one_hot(torch.tensor([k]), 4).float() * 30)
        for i in range(1000):
            run.step(i, do_arch=False)
        # labels have unit variance: half-MSE 0.5 for a constant predictor
        assert run.train_loss() < 0.05, (run.problem.op_names[k], run.train_loss())
    for objective in ["bilevel", "bilevel_unrolled", "f2ba", "moreau"]:
        run = run_testbed(compose_testbed("activation", objective, "adam"), log_every=1000)
        assert run.problem.op_names[int(run.probs().argmax())] == "sin", (objective, run.probs())


# ---------------------------------------------------------------------------- unrolled step

def test_unrolled_matches_direct_finite_difference_formula_and_restores_state(tiny_cfg, tmp_path: Path) -> None:
    run = build_run(tiny_cfg("method=darts", "objective=bilevel_unrolled", "search.batch_size=8"), tmp_path)
    model, ctx = run.model, run.ctx
    model.train()
    tr, va = Batch(*run.train_stream.sample()), Batch(*run.arch_stream.sample())
    ctx.weight_step(tr)  # creates momentum buffers, so mu*m enters the virtual step
    ctx.w_opt.param_groups[0]["lr"] = 0.05
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    bufs = {id(p): ctx.w_opt.state[p]["momentum_buffer"].clone() for p in model.parameters()}
    got = run.objective.hypergradient(tr, va)
    for k, v in model.state_dict().items():  # weights and BN statistics restored bit for bit
        assert torch.equal(v, before[k]), k
    for p in model.parameters():
        assert torch.equal(ctx.w_opt.state[p]["momentum_buffer"], bufs[id(p)])

    # the same formula written directly with torch.func.functional_call on copies
    names = [n for n, _ in model.named_parameters()]
    w = {n: p.detach().clone() for n, p in model.named_parameters()}  # restored == before (checked above)
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    alphas = ctx.arch_tensors()
    xi, mu, wd = 0.05, 0.9, 3e-4

    def loss(params: dict, batch: Batch) -> torch.Tensor:
        out = torch.func.functional_call(model, ({**params, **{k: v.clone() for k, v in buffers.items()}}),
                                         (batch.x, ctx.arch.weights()))
        return torch.nn.functional.cross_entropy(out, batch.y)

    wr = {n: t.clone().requires_grad_(True) for n, t in w.items()}
    dw = torch.autograd.grad(loss(wr, tr), list(wr.values()))
    virt = {n: (w[n] - xi * (mu * bufs[id(p)] + d + wd * w[n])).requires_grad_(True)
            for (n, p), d in zip(model.named_parameters(), dw)}
    gv = torch.autograd.grad(loss(virt, va), [*alphas, *virt.values()])
    g, v = gv[:len(alphas)], gv[len(alphas):]
    eps = 0.01 / torch.sqrt(sum((t ** 2).sum() for t in v))
    plus = torch.autograd.grad(loss({n: w[n] + eps * vi for n, vi in zip(names, v)}, tr), alphas)
    minus = torch.autograd.grad(loss({n: w[n] - eps * vi for n, vi in zip(names, v)}, tr), alphas)
    want = [gi - xi * (a - b) / (2 * eps) for gi, a, b in zip(g, plus, minus)]
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------- search integration

@pytest.mark.parametrize("method", ["gaea_darts", "darts"])
def test_each_objective_runs_a_search_epoch(method: str, tiny_cfg, tmp_path: Path) -> None:
    for objective in NEW_OBJECTIVES:
        out = tmp_path / objective
        summary = run_search(tiny_cfg(f"method={method}", f"objective={objective}", *SMALL), out)
        assert summary["status"] == "complete" and summary["objective"] == objective
        assert math.isfinite(summary["final"]["train_loss"]) and summary["final"]["val_acc"] is not None
        assert summary["extra_memory_bytes"] > 0
        hist = np.load(out / "arch_history.npz")
        assert np.abs(hist["normal"][-1] - hist["initial_normal"]).max() > 1e-6  # the architecture moved


@pytest.mark.parametrize("objective", ["f2ba", pytest.param("moreau", marks=pytest.mark.slow)])
def test_resume_is_exact_for_objectives_with_state(objective: str, tiny_cfg, tmp_path: Path) -> None:
    common = ["method=gaea_darts", f"objective={objective}", "dataset.num_train=64", "dataset.num_test=32",
              "search.batch_size=16", "search.epochs=2", "objective.warmup_epochs=0"]
    run_search(tiny_cfg(*common), tmp_path / "straight")
    run_search(tiny_cfg(*common, "search.stop_after=1"), tmp_path / "resumed")
    ckpt = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    assert ("z" in ckpt["objective"]) if objective == "f2ba" else ("theta" in ckpt["objective"])
    run_search(tiny_cfg(*common), tmp_path / "resumed")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "epoch_time"} for r in rows]  # noqa: E731
    assert strip(read_jsonl(tmp_path / "straight" / "metrics.jsonl")) == \
        strip(read_jsonl(tmp_path / "resumed" / "metrics.jsonl"))
    a, b = np.load(tmp_path / "straight" / "arch_history.npz"), np.load(tmp_path / "resumed" / "arch_history.npz")
    np.testing.assert_array_equal(a["raw_normal"], b["raw_normal"])


def test_bad_objective_settings_are_config_errors(tiny_cfg, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="lambda_schedule"):
        build_run(tiny_cfg("objective=f2ba", "objective.lambda_schedule=cubic"), tmp_path)
    with pytest.raises(ConfigError, match="objective.p"):
        build_run(tiny_cfg("objective=moreau", "objective.p=0.7"), tmp_path)


# ---------------------------------------------------------------------------- XNAS

def test_xnas_wipeout_rule() -> None:
    from nas_cli.optim import XNAS

    theta = torch.nn.Parameter(torch.full((1, 3), 1 / 3))
    opt = XNAS([theta], lr=0.5, clip=1.0, horizon=3)
    theta.grad = torch.tensor([[-1.0, 0.0, 1.0]])
    opt.step()  # t=1: scores (0.5, 0, -0.5) + const; gap of op 2 = 1.0 < 2*0.5*1*(3-1) = 2: alive
    assert (theta > 0).all()
    opt.step()  # t=2: gap of op 2 = 2.0 > 2*0.5*1*(3-2) = 1: wiped; op 1 gap 1.0 == 1: alive
    assert theta[0, 2] == 0 and theta[0, 1] > 0
    torch.testing.assert_close(theta.sum(), torch.tensor(1.0))
    theta.grad = torch.tensor([[1.0, 0.0, -5.0]])
    opt.step()  # wiped ops stay at zero whatever their gradient
    assert theta[0, 2] == 0


def test_xnas_per_example_clipping_and_search(tiny_cfg, tmp_path: Path) -> None:
    run = build_run(tiny_cfg("method=xnas", "search.batch_size=4", "optimizer.per_example_clip=0.01"), tmp_path)
    ctx = run.ctx
    b = Batch(*run.arch_stream.sample())
    got, _ = ctx.arch_grads(b)
    params = ctx.arch_tensors()
    aw = ctx.arch.weights()
    losses = torch.nn.functional.cross_entropy(ctx.forward(b.x, aw), b.y, reduction="none")
    per = [torch.autograd.grad(losses[i], params, retain_graph=True) for i in range(len(b.y))]
    want = [torch.stack([p[j].clamp(-0.01, 0.01) for p in per]).mean(0) for j in range(len(params))]
    for a, w in zip(got, want):
        torch.testing.assert_close(a, w, rtol=1e-4, atol=1e-7)
    summary = run_search(tiny_cfg("method=xnas", "dataset.num_train=64", "search.batch_size=8",
                                  "search.epochs=1"), tmp_path / "search")
    assert summary["method"] == "xnas" and math.isfinite(summary["final"]["train_loss"])


# ---------------------------------------------------------------------------- comparison command

def test_compare_objectives_writes_table_csv_and_plot(tmp_path: Path) -> None:
    from nas_cli.report.objectives import main

    rc = main(["--objectives", "bilevel", "f2ba", "--optimizers", "exp_grad", "--steps", "30",
               "--settle-steps", "20", "--out", str(tmp_path)])
    assert rc == 0
    md = (tmp_path / "objectives.md").read_text()
    assert "| exp_grad | f2ba |" in md
    rows = (tmp_path / "objectives.csv").read_text().splitlines()
    assert rows[0].startswith("optimizer,objective,upper_loss") and len(rows) == 3
    assert (tmp_path / "upper_loss.png").stat().st_size > 1000
    assert main(["--objectives", "nope", "--out", str(tmp_path)]) == 2
