"""runtime.branch_streams: the evaluation cells' two branches on two CUDA streams compute the same
function as one stream (same kernels, only launched on two queues), eager, graph-replayed and compiled.

The setting needs CUDA, so everything but the config checks runs only on a GPU."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch

from conftest import make_cfg
from nas_cli.config import validate
from nas_cli.errors import ConfigError
from nas_cli.runtime.checkpoint import config_fingerprint
from nas_cli.spaces.darts_eval import NetworkCIFAR, resolve_branch_streams
from nas_cli.spaces.darts_ops import Identity
from nas_cli.spaces.genotypes import get_genotype
from nas_cli.stages.train_eval import EvalJob, EvalTrainer

GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (streams)")
EVAL = ["experiment=demo", "dataset.num_train=256", "dataset.num_test=64", "dataset.image_size=16",
        "train.init_channels=8", "train.layers=5", "train.batch_size=32", "train.drop_path=0.0"]


def test_bad_value_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="runtime.branch_streams must be auto, true or false"):
        validate(make_cfg(["experiment=demo", "runtime.branch_streams=sometimes"]))


def test_true_without_cuda_is_a_config_error(tmp_path: Path) -> None:
    cfg = make_cfg([*EVAL, "runtime.device=cpu", "runtime.branch_streams=true"])
    with pytest.raises(ConfigError, match="branch_streams=true is not possible here: no CUDA device"):
        EvalTrainer(cfg, EvalJob("g", get_genotype("DARTS_V2"), 0, 0.0, False), tmp_path)


CUDA, CPU = torch.device("cuda"), torch.device("cpu")


@pytest.mark.parametrize("setting,device,compiled_cells,replayed,expected", [
    ("auto", CUDA, False, True, True),     # measured faster: uncompiled or compiled per branch, replayed
    ("auto", CUDA, True, True, False),     # cells compiled whole: Inductor cannot compile the forks
    ("auto", CUDA, False, False, False),   # eager launches: not measured
    ("auto", CPU, False, True, False),
    ("true", CUDA, False, False, True),
    ("false", CUDA, False, True, False),
])
def test_the_decision(setting: str, device: torch.device, compiled_cells: bool, replayed: bool,
                      expected: bool) -> None:
    assert resolve_branch_streams(setting, device, compiled_cells, replayed) is expected


def test_true_inside_compiled_cells_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="compile_scope=branches or runtime.compile=false"):
        resolve_branch_streams("true", CUDA, compiled_cells=True, replayed=True)


def test_data_parallel_runs_keep_one_stream() -> None:
    assert not resolve_branch_streams("auto", CUDA, compiled_cells=False, replayed=True, data_parallel=True)
    with pytest.raises(ConfigError, match="data-parallel runs are not tested with two streams"):
        resolve_branch_streams("true", CUDA, compiled_cells=False, replayed=True, data_parallel=True)


def test_compile_scope_branches_compiles_each_branch_and_computes_the_same(tmp_path: Path) -> None:
    """``compile_scope=branches`` (aot_eager on CPU): every preprocessing conv and non-identity op is
    compiled on its own, the cells are not, and the first training step's loss equals the per-cell
    compilation's."""
    base = [*EVAL, "runtime.device=cpu", "train.layers=3", "train.init_channels=4", "dataset.image_size=8",
            "runtime.compile=true", "runtime.compile_backend=aot_eager"]
    loss = {}
    for scope in ("cells", "branches"):
        tr = EvalTrainer(make_cfg([*base, f"runtime.compile_scope={scope}"]),
                         EvalJob("g", get_genotype("DARTS_V2"), 0, 0.0, False), tmp_path / scope)
        assert not tr.branch_streams
        compiled = {name for name, m in tr.model.named_modules() if getattr(m, "_compiled_call_impl", None)}
        cells = {f"cells.{i}" for i in range(3)}
        if scope == "cells":
            assert compiled == cells
        else:
            assert not compiled & cells and "cells.0.preprocess0" in compiled and "cells.2.ops.0" in compiled
            assert all(not isinstance(m, Identity) for name, m in tr.model.named_modules() if name in compiled)
        tr.begin_epoch(0)
        x, y = next(tr.stream.forever())
        loss[scope] = float(tr.train_step(x, y)[0])
    assert loss["branches"] == pytest.approx(loss["cells"], rel=1e-6)


def test_execution_only_setting_keeps_the_resume_fingerprint() -> None:
    a = config_fingerprint(make_cfg(["experiment=demo"]))
    assert a == config_fingerprint(make_cfg(["experiment=demo", "runtime.branch_streams=true"]))


class _FakeStream:
    """Stands in for a CUDA stream on CPU: records the forks and joins the cell asks for."""

    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name = log, name

    def wait_stream(self, other: "_FakeStream") -> None:
        self.log.append(f"{self.name} waits for {other.name}")


def test_the_first_of_each_pair_runs_on_the_side_stream_in_one_streams_order(monkeypatch) -> None:
    """CPU, with the stream calls faked: each pair forks, launches its first half on the side stream
    and then its second on the main stream (one stream's order), then joins; so the drop-path masks
    are drawn in the order of one stream, and one seed gives the same output with one stream or two."""
    log: list[str] = []
    main, side = _FakeStream(log, "main"), _FakeStream(log, "side")
    on_side = []

    class _OnSide:
        def __init__(self, stream: _FakeStream) -> None:
            assert stream is side

        def __enter__(self) -> None:
            on_side.append(True)

        def __exit__(self, *exc: object) -> None:
            on_side.pop()

    monkeypatch.setattr(torch.cuda, "current_stream", lambda *a: main)
    monkeypatch.setattr(torch.cuda, "stream", _OnSide)
    torch.manual_seed(0)
    one = NetworkCIFAR(8, 10, 5, auxiliary=False, genotype=get_genotype("GAEA_PCDARTS_cifar10"),
                       drop_path_prob=0.3).train()
    two = copy.deepcopy(one)
    ran: dict[str, bool] = {}
    for cell in two.cells:
        cell.side_stream = side  # type: ignore[assignment]

    def where(name: str):
        def hook(_mod: torch.nn.Module, _inp: object) -> None:
            ran.setdefault(name, bool(on_side))
        return hook

    for name, m in two.named_modules():
        if re.fullmatch(r"cells\.\d+\.(preprocess[01]|ops\.\d+)", name):
            m.register_forward_pre_hook(where(name))
    x = torch.randn(4, 3, 16, 16)
    outs = []
    for net in (one, two):
        torch.manual_seed(1)
        outs.append(net(x)[0])
    assert torch.equal(outs[0], outs[1])  # the same masks, drawn in the same order
    assert not torch.equal(outs[0], one.eval()(x)[0])  # drop-path did draw masks
    n_ops = len(two.cells[0].ops)
    for c in range(len(two.cells)):
        assert ran[f"cells.{c}.preprocess0"] is True and ran[f"cells.{c}.preprocess1"] is False
        for k in range(n_ops):
            assert ran[f"cells.{c}.ops.{k}"] is (k % 2 == 0), (c, k)
    pairs = len(two.cells) * (1 + n_ops // 2)
    assert log == ["side waits for main", "main waits for side"] * pairs


@GPU
@pytest.mark.gpu
@pytest.mark.parametrize("genotype", ["DARTS_V2", "PC_DARTS_cifar", "GAEA_PCDARTS_cifar10"])
@pytest.mark.parametrize("drop_path", [0.0, 0.3])
def test_two_streams_compute_what_one_stream_computes(genotype: str, drop_path: float) -> None:
    """Eager forward and backward: the same kernels on each stream, and with drop-path the same masks
    (drawn in the same order).  Logits agree exactly; a gradient summed from three or more consumers
    (a cell output feeds two later cells) may be accumulated in another order, so gradients agree to
    float rounding (cuDNN autotuning is off)."""
    torch.backends.cudnn.benchmark = False
    torch.manual_seed(0)
    one = NetworkCIFAR(8, 10, 5, auxiliary=True, genotype=get_genotype(genotype), drop_path_prob=drop_path).cuda()
    two = copy.deepcopy(one)
    side = torch.cuda.Stream()
    for cell in two.cells:
        cell.side_stream = side
    x = torch.randn(16, 3, 16, 16, device="cuda")
    logits = []
    for net in (one, two):
        torch.manual_seed(1)
        out, aux = net(x)
        (out.square().mean() + aux.square().mean()).backward()
        logits.append(out.detach())
    torch.cuda.synchronize()
    assert torch.equal(logits[0], logits[1])
    for (name, p), q in zip(one.named_parameters(), two.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)
    one.eval(), two.eval()
    assert torch.equal(one(x)[0], two(x)[0])


@GPU
@pytest.mark.gpu
@pytest.mark.parametrize("compile_", ["false", "true"])
def test_trainer_with_two_streams_matches_one(tmp_path: Path, compile_: str) -> None:
    """The graph-replayed training step with two streams, uncompiled (where ``auto`` takes them) and
    compiled per branch (Inductor kernels launched on the side stream), with drop-path (the same masks
    either way): the first step's loss equal to float precision, a 2-epoch run's loss and test metrics
    close."""
    first, losses, tests = {}, {}, {}
    for streams in ("true", "false"):
        cfg = make_cfg([*EVAL, "train.drop_path=0.2", "runtime.device=cuda", "runtime.deterministic=true",
                        f"runtime.compile={compile_}", "runtime.compile_scope=branches",
                        f"runtime.branch_streams={'auto' if streams == 'true' else 'false'}"])
        tr = EvalTrainer(cfg, EvalJob("g", get_genotype("darts_v2"), 0, 0.0, True), tmp_path / streams)
        assert tr.branch_streams == (streams == "true") and tr.graphs and tr.compiled == (compile_ == "true")
        assert all((c.side_stream is not None) == (streams == "true") for c in tr.model.cells)
        tr.begin_epoch(0)
        x, y = next(tr.stream.forever())
        first[streams] = float(tr.train_step(x, y)[0])
        tr.train_epoch(0)
        losses[streams] = tr.train_epoch(1)["train_loss"]
        tests[streams] = tr.evaluate(tr.test)
    assert first["true"] == pytest.approx(first["false"], rel=1e-5)
    assert losses["true"] == pytest.approx(losses["false"], rel=1e-2)
    assert tests["true"][0] == pytest.approx(tests["false"][0], rel=2e-2)
