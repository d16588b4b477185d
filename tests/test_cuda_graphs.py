"""Whole-step CUDA graphs: same math as the eager path (GPU), clear errors where unsupported (CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nas_cli.errors import ConfigError
from nas_cli.objectives import Batch
from nas_cli.spaces.genotypes import get_genotype
from nas_cli.stages.search import build_run
from nas_cli.stages.stepper import CudaGraphStepper, EagerStepper, build_search_stepper, graph_blocker
from nas_cli.stages.train_eval import EvalJob, EvalTrainer
from tests.conftest import TINY, make_cfg

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _run(tmp_path: Path, *extra: str, device: str = "cpu"):
    cfg = make_cfg([*TINY, f"runtime.device={device}", "objective.warmup_epochs=0", *extra])
    return build_run(cfg, tmp_path)


def test_cpu_runs_use_the_eager_stepper(tmp_path: Path) -> None:
    run = _run(tmp_path, "method=gaea_pcdarts")
    assert isinstance(build_search_stepper(run), EagerStepper)
    assert graph_blocker(run.cfg, run.device) == "CUDA graphs need a CUDA device"


def test_cuda_graphs_true_without_support_is_a_config_error(tmp_path: Path) -> None:
    # decided from the config, before the run's model and data are built
    with pytest.raises(ConfigError, match="cuda_graphs=true but CUDA graphs need a CUDA device"):
        build_search_stepper(_run(tmp_path, "method=gaea_pcdarts", "runtime.cuda_graphs=true"))


@pytest.mark.parametrize("overrides, blocked", [
    (["method=gaea_pcdarts"], None),
    (["method=darts"], None),
    (["method=gaea_darts", "objective=single_level"], None),
    (["method=darts", "objective=bilevel_unrolled"], "objective 'bilevel_unrolled'"),
    (["method=xnas"], "architecture optimizer 'xnas'"),
    (["search_space=nb201", "method=gdas"], None),  # masked one-hot forward (tests/test_hard_forward.py)
    (["search_space=nb201", "method=gdas", "runtime.hard_forward=selected"], "'hard' sampling"),
    (["search_space=darts", "method=gdas"], "'hard' sampling"),
])
def test_graph_blocker_decides_from_config(overrides: list[str], blocked: str | None) -> None:
    """The graph decision (and with it the fused, device-lr SGD) is made from the config alone; GDAS
    with the reference forward must keep the reference SGD (fused SGD rejects parameters whose
    first gradient comes late)."""
    from nas_cli.stages.stepper import graph_blocker, uses_graphs

    cfg = make_cfg(["experiment=demo", *overrides])
    why = graph_blocker(cfg, torch.device("cuda"))
    assert (why is None) if blocked is None else (blocked in why)
    assert uses_graphs(cfg, torch.device("cuda")) == (blocked is None)
    assert not uses_graphs(cfg, torch.device("cpu"))
    assert not uses_graphs(make_cfg(["experiment=demo", *overrides, "runtime.cuda_graphs=false"]),
                           torch.device("cuda"))


def test_unknown_cuda_graphs_value_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="runtime.cuda_graphs must be auto, true or false"):
        _run(tmp_path, "runtime.cuda_graphs=maybe")


def test_eval_trainer_cuda_graphs_true_on_cpu_is_a_config_error(tmp_path: Path) -> None:
    cfg = make_cfg(["experiment=demo", "runtime.device=cpu", "runtime.cuda_graphs=true", "dataset.num_train=64",
                    "dataset.image_size=8", "train.init_channels=4", "train.layers=3", "train.batch_size=16"])
    with pytest.raises(ConfigError, match="cuda_graphs=true but CUDA graphs need a CUDA device"):
        EvalTrainer(cfg, EvalJob("x", get_genotype("darts_v2"), 0), tmp_path)


def _steps(run, n: int, do_arch: bool = True) -> list[float]:
    stepper = build_search_stepper(run)
    run.model.train()
    losses = []
    batches = run.train_stream.forever()
    for _ in range(n):
        x, y = next(batches)
        out = stepper(Batch(x, y), lambda: Batch(*run.arch_stream.sample()), do_arch)
        losses.append(float(out.loss))
    return losses


@gpu
@pytest.mark.parametrize("method", ["gaea_pcdarts", "darts"])
def test_graph_replay_matches_eager_search_steps(tmp_path: Path, method: str) -> None:
    """Eight steps (2 eager warm-up, capture, 5 replays) track the eager reference: same losses, and
    architecture parameters that moved the same way up to float reassociation (fused vs foreach SGD,
    capturable vs host-step Adam: Adam's normalised update amplifies last-bit differences of
    near-zero gradients, hence a tolerance relative to how far the parameters moved)."""
    results = {}
    initial = None
    for mode in ("true", "false"):
        # the same BN, conv and weighted-sum kernels in both modes (auto picks native ones for eager steps)
        run = _run(tmp_path / mode, f"method={method}", "runtime.device=cuda", f"runtime.cuda_graphs={mode}",
                   "runtime.deterministic=true", "runtime.batchnorm=triton", "runtime.depthwise=triton",
                   "runtime.pointwise=triton", "runtime.mixing=triton")
        stepper = build_search_stepper(run)
        assert isinstance(stepper, CudaGraphStepper if mode == "true" else EagerStepper)
        initial = {k: v.detach().cpu().clone() for k, v in run.arch.raw.items()}
        losses = _steps(run, 8)
        results[mode] = (losses, {k: v.detach().cpu().clone() for k, v in run.arch.raw.items()})
    graph, eager = torch.tensor(results["true"][0]), torch.tensor(results["false"][0])
    # first steps: same parameters up to last bits; later: Adam's sign-like update of near-zero
    # arch gradients may amplify last-bit differences (nondeterministic max-pool backward on CUDA)
    torch.testing.assert_close(graph[:3], eager[:3], rtol=1e-4, atol=1e-4, msg=lambda m: f"{m}\n{graph}\n{eager}")
    torch.testing.assert_close(graph, eager, rtol=3e-3, atol=3e-3, msg=lambda m: f"{m}\n{graph}\n{eager}")
    for k, v in results["false"][1].items():
        d_eager, d_graph = (v - initial[k]).flatten(), (results["true"][1][k] - initial[k]).flatten()
        assert d_eager.abs().max() > 0
        if method.startswith("gaea"):  # EG's update is proportional to the gradient: tight agreement
            assert (d_graph - d_eager).abs().max() <= 0.05 * d_eager.abs().max(), k
        else:  # Adam's sign-like steps on noise-level gradients: compare the update directions
            assert torch.nn.functional.cosine_similarity(d_graph, d_eager, dim=0) > 0.9, k


@gpu
def test_graph_lr_schedule_is_followed(tmp_path: Path) -> None:
    """The captured SGD step reads the learning rate from device memory: lr=0 freezes the weights."""
    from nas_cli.stages.common import set_lr

    run = _run(tmp_path, "method=gaea_pcdarts", "runtime.device=cuda", "runtime.cuda_graphs=true")
    _steps(run, 4)  # captured and replayed
    set_lr(run.ctx.w_opt, 0.0)
    for g in run.ctx.w_opt.param_groups:  # no momentum carry-over either
        for p in g["params"]:
            st = run.ctx.w_opt.state.get(p, {})
            if st.get("momentum_buffer") is not None:
                st["momentum_buffer"].zero_()
    before = [p.detach().clone() for p in run.model.parameters()]
    _steps(run, 2)
    wd_free = all(torch.equal(a, p.detach()) for a, p in zip(before, run.model.parameters()))
    assert wd_free


@gpu
def test_eval_trainer_graph_matches_eager(tmp_path: Path) -> None:
    # deterministic cuDNN: with autotuning the eager and the captured steps may pick different algorithms
    base = ["experiment=demo", "runtime.device=cuda", "runtime.compile=false", "runtime.deterministic=true",
            "dataset.num_train=256", "dataset.image_size=16",
            "train.init_channels=8", "train.layers=5", "train.batch_size=32", "train.drop_path=0.0",
            "train.auxiliary_weight=0.4", "runtime.depthwise=native"]
    losses = {}
    for mode in ("true", "false"):
        cfg = make_cfg([*base, f"runtime.cuda_graphs={mode}"])
        tr = EvalTrainer(cfg, EvalJob("g", get_genotype("darts_v2"), 0), tmp_path / mode)
        assert tr.graphs == (mode == "true")
        tr.train_epoch(0)
        losses[mode] = tr.train_epoch(1)["train_loss"]
    assert losses["true"] == pytest.approx(losses["false"], rel=1e-3)


def test_lr_tensor_survives_set_lr_and_checkpoint_loads() -> None:
    """A captured step reads the lr tensor it was recorded with: set_lr and a checkpoint load must
    keep that very tensor (load_state_dict alone would install the checkpoint's tensor, maybe on the CPU)."""
    from nas_cli.runtime.graphs import load_optimizer_state
    from nas_cli.stages.common import set_lr

    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.SGD([p], lr=torch.tensor(0.1), momentum=0.9)
    lr = opt.param_groups[0]["lr"]
    set_lr(opt, 0.05)
    assert opt.param_groups[0]["lr"] is lr and float(lr) == pytest.approx(0.05)
    saved = torch.optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=torch.tensor(0.02), momentum=0.9)
    load_optimizer_state(opt, saved.state_dict())
    assert opt.param_groups[0]["lr"] is lr and float(lr) == pytest.approx(0.02)
    plain = torch.optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=0.1)
    load_optimizer_state(plain, saved.state_dict())  # float lrs load as usual
    assert float(plain.param_groups[0]["lr"]) == pytest.approx(0.02)


@gpu
@pytest.mark.parametrize("method", ["gaea_pcdarts", "gdas"])
def test_graph_replayed_evaluation_matches_eager(tmp_path: Path, method: str) -> None:
    """Validation forwards replayed from CUDA graphs (full batches and the partial last one) give
    the eager metrics, also after the weights and the selected architecture changed (both are read
    from memory the graph copies into or updates in place)."""
    from nas_cli.stages.search import _evaluate, _test_batches

    from tests.test_nb201 import NB_TINY

    common = ["runtime.device=cuda", "runtime.cuda_graphs=true", "runtime.deterministic=true",
              "search.eval_batch_size=48"]
    if method == "gdas":  # NB201: the masked one-hot forward
        run = build_run(make_cfg([*NB_TINY, "method=gdas", "dataset.num_test=128", *common]), tmp_path)
        assert run.hard_forward == "masked"
    else:
        run = _run(tmp_path, f"method={method}", *common)
    assert run.eval_graph is not None
    graph = run.eval_graph
    for round_ in range(2):
        _steps(run, 3)
        run.selected = run.selector(run, round_)
        results = {}
        for mode in ("graph", "eager"):
            run.eval_graph = graph if mode == "graph" else None
            # the test split: fixed batches (the validation stream draws new augmentations)
            results[mode] = [_evaluate(run, _test_batches(run), None) for _ in range(2)]
        run.eval_graph = graph
        for (lg, ag), (le, ae) in zip(results["graph"], results["eager"]):
            assert lg == pytest.approx(le, rel=1e-5, abs=1e-6) and ag == pytest.approx(ae, abs=1e-6)
    assert len(graph.graphs) >= 1 and all(g.captured for g in graph.graphs.values())


def test_capture_runs_without_garbage_collection(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Python garbage collection inside a capture can free CUDA objects of earlier runs (graphs,
    events), which invalidates the capture; GraphedStep keeps the collector off while capturing."""
    import contextlib
    import gc

    from nas_cli.runtime.graphs import GraphedStep

    seen: list[bool] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: type("G", (), {"replay": lambda self: None})())
    monkeypatch.setattr(torch.cuda, "graph", lambda *a, **k: contextlib.nullcontext())
    step = GraphedStep(lambda x: (seen.append(gc.isenabled()) or x * 2,), warmup=0)
    assert gc.isenabled()
    step(torch.ones(2))
    assert seen == [False] and gc.isenabled() and step.captured
    gc.disable()
    try:  # a collector the caller turned off stays off
        GraphedStep(lambda x: (x,), warmup=0)(torch.ones(2))
        assert not gc.isenabled()
    finally:
        gc.enable()
