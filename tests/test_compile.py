"""runtime.compile: the decision, the config checks, and compiled == uncompiled on CPU.

The CPU tests compile with the ``aot_eager`` backend: Dynamo traces the cells and AOTAutograd
builds their forward/backward graphs exactly as for Inductor, but no kernels are generated (on
this 2-core CI box Inductor's C++ compilation would take minutes).  Inductor itself ran on the
GPU (nas-bench, ``benchmarks/gpu_compile.sh``); the GPU test below repeats the check there.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import make_cfg
from nas_cli.config import validate
from nas_cli.errors import ConfigError
from nas_cli.runtime.checkpoint import config_fingerprint
from nas_cli.runtime.compile import MODEL_SCOPE_MIN_STEPS, compile_enabled, resolve_compile_scope, run_eagerly
from nas_cli.spaces.genotypes import get_genotype
from nas_cli.stages.search import build_run
from nas_cli.stages.stepper import build_search_stepper
from nas_cli.stages.train_eval import EvalJob, EvalTrainer, train_eval_network

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
NB = ["experiment=demo", "search_space=nb201", "dataset.num_train=128", "dataset.num_test=64",
      "dataset.image_size=8", "search_space.init_channels=4", "search_space.cells_per_stage=1",
      "search.batch_size=16", "runtime.device=cpu", "method=gaea_darts", "objective.warmup_epochs=0"]
EVAL = ["experiment=demo", "runtime.device=cpu", "dataset.num_train=64", "dataset.num_test=40",
        "dataset.image_size=8", "train.init_channels=4", "train.layers=3", "train.batch_size=16",
        "train.eval_batch_size=32", "train.drop_path=0.0"]  # drop-path masks: float and tensor paths draw differently


def compiled(module: torch.nn.Module) -> bool:
    return getattr(module, "_compiled_call_impl", None) is not None


def test_compile_decision() -> None:
    assert not compile_enabled("false", None, CUDA)
    assert compile_enabled("auto", None, CUDA) and not compile_enabled("auto", None, CPU)
    assert not compile_enabled("auto", None, CUDA, auto=False)  # search supernets: only on request
    assert compile_enabled("true", None, CPU)
    assert not compile_enabled("auto", "reason", CUDA)
    with pytest.raises(ConfigError, match="reason"):
        compile_enabled("true", "reason", CUDA)
    with pytest.raises(ConfigError, match="runtime.compile"):
        compile_enabled("sometimes", None, CPU)


@pytest.mark.parametrize("override,match", [
    ("runtime.compile=maybe", "runtime.compile must"),
    ("runtime.compile_scope=layer", "compile_scope"),
    ("runtime.compile_mode=reduce-overhead", "CUDA graphs"),
    ("+runtime.compile_options.no_such_option=true", "'no_such_option' is not an Inductor option"),
    ("+runtime.compile_options.triton.nonexistent=1", "'triton.nonexistent' is not an Inductor option"),
    ("+runtime.compile_options.triton.cudagraphs=true", "CUDA graphs"),
])
def test_bad_compile_settings_are_config_errors(override: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        validate(make_cfg(["experiment=demo", override]))


def test_compile_options_need_inductor() -> None:
    with pytest.raises(ConfigError, match="Inductor options"):
        validate(make_cfg(["experiment=demo", "runtime.compile_backend=aot_eager",
                           "+runtime.compile_options.coordinate_descent_tuning=true"]))


def test_compile_options_merge_over_the_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.compile takes a mode or options, never both: with options the mode's own options are
    merged under them, and every compiled cell gets the same keyword arguments."""
    from nas_cli.runtime.compile import compile_kwargs, compile_module

    rt = make_cfg(["experiment=demo"]).runtime
    assert compile_kwargs(rt) == {"backend": "inductor", "dynamic": False}
    rt.compile_mode = "max-autotune-no-cudagraphs"
    assert compile_kwargs(rt) == {"backend": "inductor", "dynamic": False, "mode": "max-autotune-no-cudagraphs"}
    rt.compile_options = {"conv_1x1_as_mm": True, "coordinate_descent_tuning": False}
    validate_rt = make_cfg(["experiment=demo", "runtime.compile_mode=max-autotune-no-cudagraphs",
                            "+runtime.compile_options.conv_1x1_as_mm=true"])
    validate(validate_rt)
    assert compile_kwargs(rt) == {"backend": "inductor", "dynamic": False,
                                  "options": {"max_autotune": True, "coordinate_descent_tuning": False,
                                              "conv_1x1_as_mm": True}}
    seen: list[dict] = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: seen.append(kw))
    net = torch.nn.Module()
    net.cells = torch.nn.ModuleList([torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)])
    assert len(compile_module(net, rt)) == 2
    assert seen == [compile_kwargs(rt)] * 2


def test_the_evaluation_networks_default_inductor_options() -> None:
    """The evaluation network's defaults (EVAL_COMPILE_OPTIONS: combo_kernels) go under the user's
    compile_options, which override them, and never reach a backend that takes no options; the trainer
    compiles with them (test_compile_message_warns_that_autotuning_options_take_longer)."""
    from nas_cli.runtime.compile import EVAL_COMPILE_OPTIONS, compile_kwargs

    assert EVAL_COMPILE_OPTIONS == {"combo_kernels": True}
    rt = make_cfg(["experiment=demo"]).runtime
    assert compile_kwargs(rt, EVAL_COMPILE_OPTIONS) == {"backend": "inductor", "dynamic": False,
                                                        "options": {"combo_kernels": True}}
    rt.compile_options = {"combo_kernels": False, "coordinate_descent_tuning": True}
    assert compile_kwargs(rt, EVAL_COMPILE_OPTIONS)["options"] == {"combo_kernels": False,
                                                                   "coordinate_descent_tuning": True}
    rt.compile_options = {}
    rt.compile_backend = "aot_eager"
    assert compile_kwargs(rt, EVAL_COMPILE_OPTIONS) == {"backend": "aot_eager", "dynamic": False}


def test_one_hot_sampling_cannot_compile(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="runtime.compile=true is not possible"):
        build_run(make_cfg([*NB, "method=gdas", "runtime.compile=true", "runtime.compile_backend=aot_eager"]),
                  tmp_path)


def test_missing_toolchain_keeps_auto_eager_and_fails_true(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nas_cli.runtime.compile as comp

    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(comp.shutil, "which", lambda name: None)
    assert comp.toolchain_blocker(CPU) == "no C compiler found (set CC)"
    assert comp.toolchain_blocker(CUDA) is not None  # Triton missing, or no C compiler for its launcher
    assert not compile_enabled("auto", comp.toolchain_blocker(CUDA), CUDA)  # auto stays eager on a GPU box
    with pytest.raises(ConfigError, match="no C compiler"):
        EvalTrainer(make_cfg([*EVAL, "runtime.compile=true"]), EvalJob("g", get_genotype("darts_v2"), 0), tmp_path)
    monkeypatch.setenv("CC", "/opt/cc")
    assert comp.toolchain_blocker(CPU) is None


def test_execution_settings_do_not_change_the_resume_fingerprint() -> None:
    base = config_fingerprint(make_cfg(["experiment=demo"]))[0]
    # runtime.fused too: the momentum is re-laid out on resume (runtime/optstate.py)
    for o in ("runtime.compile=true", "runtime.compile_scope=model", "runtime.cuda_graphs=false",
              "runtime.batchnorm=function", "runtime.fused=false", "runtime.deterministic=true",
              "runtime.sync_bn=false", "runtime.channels_last=true",
              "+runtime.compile_options.coordinate_descent_tuning=true"):
        assert config_fingerprint(make_cfg(["experiment=demo", o]))[0] == base, o
    assert config_fingerprint(make_cfg(["experiment=demo", "search.lr=0.05"]))[0] != base


def test_checkpoint_config_from_before_a_key_became_execution_only_still_matches() -> None:
    """A checkpoint's stored config that still holds runtime.deterministic (written before the key
    joined RESUME_IGNORED) is the same run; a real change is not."""
    import copy

    from nas_cli.runtime.checkpoint import same_run_config

    current = config_fingerprint(make_cfg(["experiment=demo"]))[1]
    old = copy.deepcopy(current)
    old["runtime"]["deterministic"] = True
    old["runtime"]["channels_last"] = False  # a bool before runtime.channels_last=auto existed
    assert same_run_config(old, current)
    del old["runtime"]["deterministic"]
    old["runtime"].pop("sync_bn", None)  # a checkpoint from before runtime.sync_bn existed
    assert same_run_config(old, current)
    old["search"]["lr"] = 0.05
    assert not same_run_config(old, current)
    assert not same_run_config(None, current)


@pytest.mark.parametrize("value", [True, False])
def test_deterministic_sets_cudnn_algorithm_choice(value: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """runtime.deterministic=true: deterministic cuDNN algorithms, no autotuning; false (the
    default, as in the reference code): autotuning (cudnn.benchmark)."""
    from nas_cli.runtime.seed import seed_everything

    monkeypatch.setattr(torch.backends.cudnn, "deterministic", not value)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", value)
    seed_everything(0, value)
    assert torch.backends.cudnn.deterministic is value and torch.backends.cudnn.benchmark is (not value)
    assert make_cfg(["experiment=demo"]).runtime.deterministic is False


def _search_losses(tmp_path: Path, mode: str, steps: int = 3) -> tuple[list[float], object]:
    run = build_run(make_cfg([*NB, f"runtime.compile={mode}", "runtime.compile_backend=aot_eager"]), tmp_path / mode)
    stepper = build_search_stepper(run)
    train, arch = run.train_stream.forever(), run.arch_stream.forever()
    losses = [float(stepper(run.shard(*next(train)), lambda: run.shard(*next(arch)), True).loss)
              for _ in range(steps)]
    return losses, run


def test_compiled_search_matches_uncompiled(tmp_path: Path) -> None:
    torch._dynamo.reset()
    ref, run_ref = _search_losses(tmp_path, "false")
    got, run = _search_losses(tmp_path, "true")
    assert not any(compiled(c) for c in run_ref.model.cells)
    assert all(compiled(c) for c in run.model.cells)  # regional: every cell, not the whole network
    assert got == pytest.approx(ref, rel=1e-5, abs=1e-6)
    for k, v in run_ref.arch.weights(sample=False).items():
        torch.testing.assert_close(run.arch.weights(sample=False)[k], v, rtol=1e-5, atol=1e-6)
    assert list(run.model.state_dict()) == list(run_ref.model.state_dict())  # no _orig_mod. prefixes
    with run_eagerly():  # evaluation passes bypass the compiled code
        torch._dynamo.utils.counters.clear()
        run.model.eval()
        run.model(torch.randn(3, 3, 8, 8), run.arch.weights(sample=False))
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 0


def test_compiled_eval_trainer_matches_uncompiled(tmp_path: Path) -> None:
    torch._dynamo.reset()
    out = {}
    for mode in ("false", "true"):
        cfg = make_cfg([*EVAL, f"runtime.compile={mode}", "runtime.compile_backend=aot_eager"])
        tr = EvalTrainer(cfg, EvalJob("g", get_genotype("darts_v2"), 0, 0.0, True), tmp_path / mode)
        assert tr.compiled == (mode == "true") and all(compiled(c) for c in tr.model.cells) == (mode == "true")
        # runtime.channels_last=auto: NHWC for the compiled network only (so this also compares layouts)
        assert tr.channels_last == (mode == "true")
        assert tr.model.stem[0].weight.is_contiguous(memory_format=torch.channels_last) == (mode == "true")
        tr.begin_epoch(3)
        # the drop-path probability is a tensor when compiled: a new float each epoch would recompile
        assert isinstance(tr.model.drop_path_prob, torch.Tensor) == (mode == "true")
        torch.manual_seed(0)
        batches = tr.stream.forever()
        losses = [float(tr.train_step(*next(batches))[0]) for _ in range(2)]
        out[mode] = (losses, tr.evaluate(tr.test))
    assert out["true"][0] == pytest.approx(out["false"][0], rel=1e-5)
    assert out["true"][1] == pytest.approx(out["false"][1], rel=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (Inductor kernels)")
@pytest.mark.parametrize("layout,conv1x1,scope", [("false", "auto", "cells"), ("auto", "auto", "cells"),
                                                  ("auto", "matmul", "cells"), ("auto", "wgrad_matmul", "cells"),
                                                  ("auto", "triton", "cells"), ("auto", "auto", "model")])
def test_inductor_eval_step_matches_eager_on_gpu(tmp_path: Path, layout: str, conv1x1: str, scope: str) -> None:
    """Inductor computes the same function with other kernels (fused reductions, another summation
    order): the first step agrees to float precision; over a 2-epoch training run the trajectories
    drift apart by rounding (measured on the H200: 0.5 % in the epoch-2 mean loss), so that is
    compared loosely.  Evaluation passes must not compile (eval mode, other batch sizes).
    ``layout=auto``: the compiled network runs channels_last with the routed Triton depthwise
    kernels (the default), the eager one NCHW.  ``conv1x1=matmul``/``triton``: the compiled network's 1x1
    convs are Inductor matmuls / the Triton GEMM ops (the eager one keeps the convs).  ``scope=model``:
    the whole network as one graph."""
    base = ["experiment=demo", "runtime.device=cuda", "runtime.deterministic=true", "dataset.num_train=256", "dataset.image_size=16",
            "train.init_channels=8", "train.layers=5", "train.batch_size=32", "train.drop_path=0.0",
            f"runtime.channels_last={layout}", f"runtime.compile_scope={scope}"]
    first, losses, tests = {}, {}, {}
    for mode in ("true", "false"):
        tr = EvalTrainer(make_cfg([*base, f"runtime.compile={mode}",
                                   f"runtime.conv1x1={conv1x1 if mode == 'true' else 'conv'}"]),
                         EvalJob("g", get_genotype("darts_v2"), 0, 0.0, True), tmp_path / mode)
        assert tr.compiled == (mode == "true") and tr.channels_last == (layout == "auto" and mode == "true")
        tr.begin_epoch(0)
        x, y = next(tr.stream.forever())
        first[mode] = float(tr.train_step(x, y)[0])
        tr.train_epoch(0)
        losses[mode] = tr.train_epoch(1)["train_loss"]
        torch._dynamo.utils.counters.clear()
        tests[mode] = tr.evaluate(tr.test)
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 0
    assert first["true"] == pytest.approx(first["false"], rel=1e-4)
    assert losses["true"] == pytest.approx(losses["false"], rel=3e-2)
    assert tests["true"][0] == pytest.approx(tests["false"][0], rel=5e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (Triton kernels)")
def test_compiled_eval_network_takes_the_depthwise_kernels_in_bf16_too(tmp_path: Path) -> None:
    """runtime.depthwise=auto on the graph-replayed evaluation network: the Triton kernels in fp32, and
    in bf16 where that was timed (compiled, so channels_last); uncompiled NCHW bf16 keeps cuDNN."""
    from nas_cli.spaces import triton_support as ts

    if ts.triton is None:
        pytest.skip("needs Triton")
    cuda = [o if o != "runtime.device=cpu" else "runtime.device=cuda" for o in EVAL]
    job = EvalJob("g", get_genotype("darts_v2"), 0)
    for prec, comp, expect in (("fp32", "true", "triton"), ("bf16", "true", "triton"), ("fp32", "false", "triton"),
                               ("bf16", "false", "native")):
        tr = EvalTrainer(make_cfg([*cuda, f"runtime.precision={prec}", f"runtime.compile={comp}"]), job,
                         tmp_path / f"{prec}-{comp}")
        assert tr.graphs and tr.compiled == (comp == "true") and tr.depthwise == expect, (prec, comp)


def test_every_cell_shape_gets_compiled() -> None:
    """All cells share one forward (one code object) and Dynamo keeps only ``recompile_limit``
    graphs per code object (8 by default), running the rest eagerly without an error. An 11-cell
    network has 9 distinct cell shapes (like the paper's 20-cell one): every one must be compiled."""
    from omegaconf import OmegaConf

    from nas_cli.runtime.compile import compile_module
    from nas_cli.spaces.darts_eval import NetworkCIFAR

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()  # reset() keeps the counters of earlier tests' graphs
    default_limit = torch._dynamo.config.recompile_limit
    try:
        torch._dynamo.config.recompile_limit = 8  # Dynamo's default, whatever an earlier test set
        torch.manual_seed(0)
        net = NetworkCIFAR(4, 10, 11, False, get_genotype("darts_v2"))
        shapes = {(c.reduction, *[p.shape for p in c.parameters()]) for c in net.cells}
        assert len(shapes) == 9 > 8
        compile_module(net, OmegaConf.create({"compile_backend": "eager", "compile": "true"}))
        net.drop_path_prob = 0.0
        net(torch.randn(2, 3, 8, 8))
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 9
    finally:
        torch._dynamo.config.recompile_limit = default_limit
        torch._dynamo.reset()


def test_channels_last_setting(tmp_path: Path) -> None:
    """runtime.channels_last: auto = NHWC for a compiled evaluation network only; true/false force it
    anywhere; the evaluation job fingerprint of auto and false is the one older versions wrote (False)."""
    from nas_cli.stages.train_eval import job_fingerprint

    job = EvalJob("g", get_genotype("darts_v2"), 0, 0.0, True)  # with a test set to evaluate
    for mode, compile_mode, expect in (("auto", "false", False), ("false", "true", False), ("true", "false", True)):
        tr = EvalTrainer(make_cfg([*EVAL, f"runtime.channels_last={mode}", f"runtime.compile={compile_mode}",
                                   "runtime.compile_backend=aot_eager"]), job, tmp_path / mode)
        assert tr.channels_last is expect, mode
        assert tr.model.stem[0].weight.is_contiguous(memory_format=torch.channels_last) is expect, mode
        seen = []
        hook = tr.model.stem.register_forward_pre_hook(lambda m, a: seen.append(a[0].is_contiguous()))
        tr.begin_epoch(0)
        tr.train_step(*next(tr.stream.forever()))
        tr.evaluate(tr.test)
        hook.remove()
        assert seen and set(seen) == {not expect}, mode  # training and evaluation batches in that layout
    prints = {m: job_fingerprint(make_cfg([*EVAL, f"runtime.channels_last={m}"]), job) for m in ("auto", "false", "true")}
    assert prints["auto"] == prints["false"] and prints["false"][1]["channels_last"] is False
    assert prints["true"][0] != prints["false"][0]
    for mode, expect in (("auto", False), ("true", True)):  # search supernets: auto stays NCHW (measured slower)
        run = build_run(make_cfg([*NB, f"runtime.channels_last={mode}"]), tmp_path / f"s-{mode}")
        assert run.execution["channels_last"] is expect
        assert next(p for p in run.model.parameters() if p.dim() == 4).is_contiguous(
            memory_format=torch.channels_last) is expect
    with pytest.raises(ConfigError, match="runtime.channels_last must be auto, true or false"):
        validate(make_cfg([*EVAL, "runtime.channels_last=sometimes"]))


def test_compiled_eval_job_says_it_is_compiling(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Inductor compiles for minutes before a GPU job's first epoch: the job says so instead of
    sitting silent; an uncompiled job and a resumed job with nothing left to train do not."""
    torch._dynamo.reset()
    job = EvalJob("g", get_genotype("darts_v2"), 0, 0.0, True)
    for mode in ("true", "false"):
        cfg = make_cfg([*EVAL, "train.epochs=1", f"runtime.compile={mode}", "runtime.compile_backend=aot_eager"])
        assert train_eval_network(cfg, job, tmp_path / mode)["status"] == "complete"
        assert ("compiling the network" in capsys.readouterr().out) == (mode == "true")
        train_eval_network(cfg, job, tmp_path / mode)  # finished: reported, nothing compiled
        assert "compiling" not in capsys.readouterr().out


def test_compile_message_warns_that_autotuning_options_take_longer(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import nas_cli.stages.train_eval as te

    defaults: list = []  # the message, not the compilation; the trainer passes the network's defaults
    monkeypatch.setattr(te, "compile_module", lambda module, runtime, opts=None, scope=None: defaults.append(opts) or [])
    job = EvalJob("g", get_genotype("darts_v2"), 0, 0.0, True)
    for extra, longer in (([], False), (["+runtime.compile_options.coordinate_descent_tuning=true"], True),
                          (["runtime.compile_scope=model"], False), (["runtime.compile_scope=branches"], False)):
        cfg = make_cfg([*EVAL, "train.epochs=1", "runtime.compile=true", *extra])
        assert train_eval_network(cfg, job, tmp_path / f"{longer}{len(extra[0]) if extra else 0}")["status"] == "complete"
        out = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
        assert "compiling the network" in out and ("longer with autotuning" in out) == longer
        assert ("whole network as one graph" in out) == ("runtime.compile_scope=model" in extra)
        assert ("about 50 s" in out and "per branch" in out) == ("runtime.compile_scope=branches" in extra)
    assert defaults == [te.EVAL_COMPILE_OPTIONS] * 4


@pytest.mark.parametrize("setting,steps,expected", [
    ("auto", MODEL_SCOPE_MIN_STEPS, "model"),       # long evaluation runs: the faster step repays compilation
    ("auto", MODEL_SCOPE_MIN_STEPS - 1, "cells"),
    ("auto", None, "cells"),                        # search supernets (and data-parallel training)
    ("cells", 10 ** 9, "cells"), ("model", 1, "model"), ("branches", 10 ** 9, "branches"),
])
def test_compile_scope_auto_compiles_long_runs_whole(setting: str, steps, expected: str) -> None:
    assert resolve_compile_scope(setting, steps) == expected


def test_compile_scope_rejects_unknown_values() -> None:
    with pytest.raises(ConfigError, match="runtime.compile_scope must be one of auto, cells, branches, model"):
        resolve_compile_scope("layer", 10)


@pytest.mark.parametrize("epochs,scope", [(2, "cells"), (40_000, "model")])
def test_trainer_compiles_the_whole_network_for_long_runs(tmp_path: Path, epochs: int, scope: str) -> None:
    """64 training images at batch 16: 4 steps per epoch, so 40,000 epochs pass the threshold and
    2 do not; the trainer compiles the cells or the whole network accordingly, and says which."""
    assert 40_000 * 4 >= MODEL_SCOPE_MIN_STEPS > 2 * 4
    cfg = make_cfg([*EVAL, f"train.epochs={epochs}", "runtime.compile=true", "runtime.compile_backend=aot_eager"])
    tr = EvalTrainer(cfg, EvalJob("g", get_genotype("darts_v2"), 0), tmp_path)
    assert tr.compile_scope == scope
    compiled = {name for name, m in tr.model.named_modules() if getattr(m, "_compiled_call_impl", None)}
    assert compiled == ({""} if scope == "model" else {f"cells.{i}" for i in range(len(tr.model.cells))})
    uncompiled = EvalTrainer(make_cfg([*EVAL, f"train.epochs={epochs}", "runtime.compile=false"]),
                             EvalJob("g", get_genotype("darts_v2"), 0), tmp_path / "eager")
    assert uncompiled.compile_scope is None


def test_the_scope_follows_the_epochs_this_invocation_trains(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A sliced run compiles for what it runs now: stage 2's epochs before early elimination (``until``)
    per cell, whatever ``train.epochs`` says; a trainer told it has 40,000 epochs left compiles whole."""
    job = EvalJob("g", get_genotype("darts_v2"), 0)
    base = [*EVAL, "runtime.compile=true", "runtime.compile_backend=aot_eager"]
    assert EvalTrainer(make_cfg([*base, "train.epochs=40000"]), job, tmp_path / "a", planned_epochs=2).compile_scope == "cells"
    assert EvalTrainer(make_cfg([*base, "train.epochs=2"]), job, tmp_path / "b", planned_epochs=40_000).compile_scope == "model"
    out = train_eval_network(make_cfg([*base, "train.epochs=40000"]), job, tmp_path / "c", until=1)
    assert out["status"] == "partial"
    printed = " ".join(capsys.readouterr().out.split())
    assert "compiling the network" in printed and "whole network" not in printed
