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


def test_resolve_impl() -> None:
    assert resolve_impl("auto", torch.device("cpu")) == "native"
    assert resolve_impl("auto", torch.device("cuda")) == "function2"
    assert resolve_impl("auto", torch.device("cuda"), replayed=False) == "native"  # eager: host-bound
    with pytest.raises(ConfigError, match="runtime.batchnorm must be"):
        resolve_impl("welford", torch.device("cpu"))


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
