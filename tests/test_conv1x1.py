"""``runtime.conv1x1=matmul``: dense 1x1 convs as ``F.linear`` over the NHWC view (spaces/conv1x1.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import make_cfg
from nas_cli.config import validate
from nas_cli.errors import ConfigError
from nas_cli.spaces.conv1x1 import MatmulConv1x1, is_dense_1x1, resolve_conv1x1, use_conv1x1_impl
from nas_cli.spaces.darts_eval import NetworkCIFAR
from nas_cli.spaces.genotypes import get_genotype
from nas_cli.stages.train_eval import EvalJob, EvalTrainer

EVAL = ["experiment=demo", "runtime.device=cpu", "dataset.num_train=64", "dataset.num_test=40",
        "dataset.image_size=8", "train.init_channels=4", "train.layers=3", "train.batch_size=16",
        "train.eval_batch_size=32", "train.drop_path=0.0", "runtime.channels_last=true"]


@pytest.mark.parametrize("impl,bias", [("matmul", False), ("matmul", True), ("wgrad_matmul", False)])
def test_matmul_equals_the_conv_with_gradients(impl: str, bias: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(5, 7, 1, bias=bias).double()
    mm = nn.Conv2d(5, 7, 1, bias=bias).double()
    mm.load_state_dict(conv.state_dict())
    use_conv1x1_impl(mm, impl)
    assert isinstance(mm, MatmulConv1x1) and mm.impl == impl
    backward_ops: list[str] = []
    x = torch.randn(3, 5, 6, 4, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    g = torch.randn(3, 7, 6, 4, dtype=torch.float64)
    outs = []
    for m in (conv, mm):
        xi = x.clone().requires_grad_(True)
        if m is mm and impl == "matmul":  # the matmul path, not the conv behind another name
            monkeypatch.setattr(torch.nn.functional, "conv2d", None)
        y = m(xi)
        if m is mm and impl == "wgrad_matmul":  # cuDNN's forward; the weight gradient is a matmul
            assert type(y.grad_fn).__name__ == "_ConvMatmulWeightGradBackward"
            real = torch.ops.aten.convolution_backward
            monkeypatch.setattr(torch.ops.aten, "convolution_backward",
                                lambda *a: (backward_ops.append(str(a[-1])), real(*a))[1])
        (y * g).sum().backward()
        outs.append((y, xi.grad, *[p.grad for p in m.parameters()]))
    y_mm = outs[1][0]
    assert y_mm.is_contiguous(memory_format=torch.channels_last) and y_mm.shape == (3, 7, 6, 4)
    for a, b in zip(*outs):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
    assert backward_ops == (["[True, False, False]"] if impl == "wgrad_matmul" else [])


@pytest.mark.parametrize("impl", ["matmul", "wgrad_matmul"])
def test_nchw_input_keeps_the_conv(impl: str) -> None:
    torch.manual_seed(0)
    m = nn.Conv2d(4, 6, 1, bias=False)
    x = torch.randn(2, 4, 5, 5)
    ref = m(x)
    use_conv1x1_impl(m, impl)
    assert torch.equal(m(x), ref)  # NCHW: the very same conv call


def test_wgrad_matmul_leaves_autocast_to_the_conv() -> None:
    """Under autocast the conv computes in bf16 while the saved input and weight stay fp32: the custom
    backward would mix dtypes, so autocast keeps the plain conv (which autocast handles)."""
    torch.manual_seed(0)
    m = nn.Conv2d(4, 6, 1, bias=False)
    use_conv1x1_impl(m, "wgrad_matmul")
    x = torch.randn(2, 4, 5, 5).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    assert type(m(x).grad_fn).__name__ == "_ConvMatmulWeightGradBackward"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
    assert type(y.grad_fn).__name__ != "_ConvMatmulWeightGradBackward" and y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert m.weight.grad is not None and m.weight.grad.dtype == torch.float32


def test_only_dense_stride1_1x1_convs_switch_and_the_state_dict_stays() -> None:
    torch.manual_seed(0)
    net = NetworkCIFAR(4, 10, 5, True, get_genotype("darts_v2"))
    keys = {k: v.shape for k, v in net.state_dict().items()}
    expected = [m for m in net.modules() if type(m) is nn.Conv2d and m.kernel_size == (1, 1) and m.stride == (1, 1)]
    assert len(expected) > 20
    assert use_conv1x1_impl(net, "matmul") == len(expected)
    assert all(type(m) is MatmulConv1x1 for m in expected)
    others = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m not in expected]
    # depthwise, stride-2 (FactorizedReduce), 3x3 stem and the auxiliary head's 2x2 conv are untouched
    assert others and all(type(m) is nn.Conv2d and not is_dense_1x1(m) or m.stride != (1, 1) for m in others)
    assert {k: v.shape for k, v in net.state_dict().items()} == keys
    assert use_conv1x1_impl(net, "conv") == len(expected)
    assert not any(isinstance(m, MatmulConv1x1) for m in net.modules())


def test_setting_values() -> None:
    assert resolve_conv1x1("auto") == "conv" and resolve_conv1x1("MATMUL") == "matmul"
    with pytest.raises(ConfigError, match="runtime.conv1x1"):
        resolve_conv1x1("gemm")
    with pytest.raises(ConfigError, match="runtime.conv1x1 must be"):
        validate(make_cfg(["experiment=demo", "runtime.conv1x1=gemm"]))
    validate(make_cfg(["experiment=demo", "runtime.conv1x1=triton"]))  # a valid value ...
    with pytest.raises(ConfigError, match="runtime.conv1x1=triton needs Triton and a CUDA device"):
        resolve_conv1x1("triton", torch.device("cpu"))  # ... that a CPU run cannot take (no interpreter here)


# compiled: only the autograd.Function variant (Dynamo traces it as a higher-order op; F.linear is plain)
@pytest.mark.parametrize("compile_mode,variant", [("false", "matmul"), ("false", "wgrad_matmul"),
                                                  ("true", "wgrad_matmul")])
def test_eval_trainer_with_matmul_1x1_matches_the_conv(tmp_path: Path, compile_mode: str, variant: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Same losses and test metrics; compiled (aot_eager: Dynamo + AOTAutograd graphs) as well."""
    torch._dynamo.reset()
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)  # restored afterwards
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    out = {}
    for impl in ("conv", variant):
        cfg = make_cfg([*EVAL, f"runtime.conv1x1={impl}", f"runtime.compile={compile_mode}",
                        "runtime.compile_backend=aot_eager"])
        tr = EvalTrainer(cfg, EvalJob("g", get_genotype("darts_v2"), 0, 0.0, True), tmp_path / impl)
        assert tr.conv1x1 == impl
        if impl != "conv":  # the matmuls get the convs' precision (TF32 where cuDNN may use it)
            assert torch.backends.cuda.matmul.allow_tf32 == torch.backends.cudnn.allow_tf32
        assert any(isinstance(m, MatmulConv1x1) for m in tr.model.modules()) == (impl != "conv")
        tr.begin_epoch(0)
        torch.manual_seed(0)
        batches = tr.stream.forever()
        losses = [float(tr.train_step(*next(batches))[0]) for _ in range(3)]
        out[impl] = (losses, tr.evaluate(tr.test))
    assert out[variant][0] == pytest.approx(out["conv"][0], rel=1e-5)
    assert out[variant][1] == pytest.approx(out["conv"][1], rel=1e-5)
