"""The fast BatchNorm implementations compute the reference non-affine BatchNorm exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nas_cli.errors import ConfigError
from nas_cli.spaces.batchnorm import BN_IMPLS, SearchBatchNorm2d, resolve_impl, use_batchnorm_impl


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                 reason="needs CUDA"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", sorted(BN_IMPLS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_impl_matches_native_batchnorm(impl: str, dtype: torch.dtype, device: str) -> None:
    torch.manual_seed(0)
    ref = nn.BatchNorm2d(5, affine=False).to(device, dtype)
    bn = nn.BatchNorm2d(5, affine=False).to(device, dtype)
    assert use_batchnorm_impl(bn, impl) == 1 and isinstance(bn, SearchBatchNorm2d)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    for step in range(3):  # running statistics accumulate identically
        x = (torch.randn(6, 5, 7, 7, dtype=dtype, device=device) * (step + 2) + step).requires_grad_(True)
        x2 = x.detach().clone().requires_grad_(True)
        g = torch.randn_like(x)
        y_ref, y = ref(x), bn(x2)
        y_ref.backward(g)
        y.backward(g)
        torch.testing.assert_close(y, y_ref, atol=tol, rtol=tol)
        torch.testing.assert_close(x2.grad, x.grad, atol=tol, rtol=tol)
    torch.testing.assert_close(bn.running_mean, ref.running_mean, atol=tol, rtol=tol)
    torch.testing.assert_close(bn.running_var, ref.running_var, atol=tol, rtol=tol)
    assert int(bn.num_batches_tracked) == int(ref.num_batches_tracked) == 3
    assert bn.state_dict().keys() == ref.state_dict().keys()
    bn.eval()
    ref.eval()
    x = torch.randn(2, 5, 3, 3, dtype=dtype, device=device)
    torch.testing.assert_close(bn(x), ref(x))


def test_affine_batchnorms_are_left_alone() -> None:
    net = nn.Sequential(nn.BatchNorm2d(3), nn.BatchNorm2d(3, affine=False))
    assert use_batchnorm_impl(net, "function") == 1
    assert type(net[0]) is nn.BatchNorm2d


def test_resolve_impl(monkeypatch: pytest.MonkeyPatch) -> None:
    from nas_cli.spaces import triton_support

    assert resolve_impl("auto", torch.device("cpu")) == "native"
    # replayed CUDA steps: the Triton kernels where Triton is installed, function2 without it
    expected = "triton" if triton_support.triton is not None else "function2"
    assert resolve_impl("auto", torch.device("cuda")) == expected
    assert resolve_impl("auto", torch.device("cuda"), replayed=False) == "native"  # eager: host-bound
    with pytest.raises(ConfigError, match="runtime.batchnorm must be"):
        resolve_impl("welford", torch.device("cpu"))
    with monkeypatch.context() as m:
        m.setattr(triton_support, "triton", None)
        assert resolve_impl("auto", torch.device("cuda")) == "function2"

    if not triton_support.interpreted():  # the Triton kernels need CUDA (or the interpreter)
        with pytest.raises(ConfigError, match="runtime.batchnorm=triton needs Triton and a CUDA device"):
            resolve_impl("triton", torch.device("cpu"))
    if triton_support.triton is not None:
        assert resolve_impl("triton", torch.device("cuda")) == "triton"


@pytest.mark.parametrize("fused", [False, True])
def test_supernet_with_function_batchnorm_matches_native(fused: bool) -> None:
    """Switching a whole supernet (per-edge or fused cells) to the function BN changes no number."""
    import copy

    from nas_cli.spaces.base import RelaxationSpec
    from nas_cli.spaces.darts import DartsSpace

    torch.manual_seed(0)
    space = DartsSpace({"init_channels": 8, "layers": 3})
    relax = RelaxationSpec(partial_channels=2, learn_edges=True, sampling="mixture")
    ref = space.build_supernet(10, 3, relax, fused=fused)
    fast = copy.deepcopy(ref)
    assert use_batchnorm_impl(fast, "function") > 0
    arch = {k: torch.softmax(torch.randn(14, 8), -1) for k in ("normal", "reduce")}
    arch.update({f"{k}_edges": torch.rand(14) for k in ("normal", "reduce")})
    x = torch.randn(4, 3, 8, 8)
    out_ref, out = ref(x, arch), fast(x, arch)
    torch.testing.assert_close(out, out_ref, atol=1e-4, rtol=1e-4)
    out_ref.square().sum().backward()
    out.square().sum().backward()
    for (n, a), (_, b) in zip(ref.named_parameters(), fast.named_parameters()):
        torch.testing.assert_close(b.grad, a.grad, atol=1e-4, rtol=1e-3, msg=n)
    for (n, a), (_, b) in zip(ref.state_dict().items(), fast.state_dict().items()):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4, msg=n)


@pytest.fixture
def one_rank_group():
    """A single-process gloo group: the synchronised BN's collectives run for real (world size 1)."""
    import torch.distributed as tdist

    tdist.init_process_group("gloo", rank=0, world_size=1, store=tdist.HashStore())
    yield
    tdist.destroy_process_group()


@pytest.mark.parametrize("affine", [True, False])
def test_sync_batchnorm_is_batchnorm_with_one_rank(affine: bool, one_rank_group: None) -> None:
    """runtime.sync_bn's BatchNorm equals nn.BatchNorm2d (outputs, input/weight/bias gradients,
    running statistics, counters) when the global batch is this process's batch.  The 2-process
    equivalence is tests/test_ddp_search.py's."""
    from nas_cli.spaces.batchnorm import use_sync_batchnorm

    torch.manual_seed(0)
    ref = nn.Sequential(nn.BatchNorm2d(5, affine=affine))
    bn = nn.Sequential(nn.BatchNorm2d(5, affine=affine))
    if affine:
        with torch.no_grad():
            for m in (ref[0], bn[0]):
                m.weight.copy_(torch.linspace(0.5, 2.0, 5))
                m.bias.copy_(torch.linspace(-1.0, 1.0, 5))
    assert use_sync_batchnorm(bn) == 1 and bn[0].sync
    for step in range(3):
        x = (torch.randn(6, 5, 7, 7, dtype=torch.float64) * (step + 2) + step)
        ref, bn = ref.double(), bn.double()
        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        g = torch.randn_like(x)
        ya, yb = ref(xa), bn(xb)
        torch.testing.assert_close(yb, ya, rtol=1e-10, atol=1e-10)
        ga = torch.autograd.grad(ya, [xa, *ref.parameters()], g)
        gb = torch.autograd.grad(yb, [xb, *bn.parameters()], g)
        for a, b in zip(ga, gb):
            torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)
    for (k, a), b in zip(ref.state_dict().items(), bn.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10, msg=k)
    bn.eval()  # eval mode: running statistics, no collective
    torch.testing.assert_close(bn(x), ref.eval()(x))
