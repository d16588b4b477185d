"""Exponentiated gradient: paper formula, simplex invariants, numerics variants, and the
GAEA Figure-1 claim (EG drives op-weight entropy down faster than softmax + Adam)."""

import math

import pytest
import torch

from nas_cli.arch import ArchParameters, entropy
from nas_cli.optim import ExponentiatedGradient, ProjectedSGD, eg_update, project_simplex
from nas_cli.spaces.base import ArchTensorSpec


def random_simplex(rows: int, cols: int, gen: torch.Generator) -> torch.Tensor:
    t = torch.rand(rows, cols, generator=gen, dtype=torch.float64) + 0.05
    return t / t.sum(-1, keepdim=True)


@pytest.mark.parametrize("eta", [0.01, 0.1, 1.0])
def test_eg_matches_paper_formula(eta: float) -> None:
    gen = torch.Generator().manual_seed(0)
    theta = random_simplex(14, 8, gen)
    g = torch.randn(14, 8, generator=gen, dtype=torch.float64) * 3
    p = torch.nn.Parameter(theta.clone())
    opt = ExponentiatedGradient([p], lr=eta, numerics="paper")
    p.grad = g.clone()
    opt.step()
    expected = theta * torch.exp(-eta * g)
    expected = expected / expected.sum(-1, keepdim=True)
    torch.testing.assert_close(p.detach(), expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(p.sum(-1), torch.ones(14, dtype=torch.float64))


def test_eg_clamp_orders_match_reference_code() -> None:
    gen = torch.Generator().manual_seed(1)
    theta = random_simplex(6, 5, gen)
    g = torch.randn(6, 5, generator=gen, dtype=torch.float64) * 80  # drives some entries below 1e-5
    raw = theta * torch.exp(-0.1 * g)
    # official EDARTS: multiply, clamp, normalise
    ref = raw.clamp_min(1e-5)
    ref = ref / ref.sum(-1, keepdim=True)
    torch.testing.assert_close(eg_update(theta, g, 0.1, None, "clamp_normalize", 1e-5), ref)
    # official EGDAS: multiply, normalise, clamp
    ref2 = (raw / raw.sum(-1, keepdim=True)).clamp_min(1e-5)
    torch.testing.assert_close(eg_update(theta, g, 0.1, None, "normalize_clamp", 1e-5), ref2)
    assert ref2.min() >= 1e-5 and not torch.allclose(ref2.sum(-1), torch.ones(6, dtype=torch.float64))
    assert eg_update(theta, g, 0.1, None, "clamp_normalize", 1e-5).min() > 0


def test_eg_is_overflow_safe_and_stays_on_simplex() -> None:
    theta = torch.full((3, 4), 0.25)
    g = torch.tensor([[1e4, -1e4, 0.0, 5.0]] * 3)
    out = eg_update(theta, g, 0.1, None, "clamp_normalize", 1e-5)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.sum(-1), torch.ones(3))


def test_eg_segments_normalise_per_node() -> None:
    gen = torch.Generator().manual_seed(2)
    segs = (2, 3, 4, 5)
    b = torch.cat([torch.full((k,), 1.0 / k) for k in segs]).double()
    g = torch.randn(14, generator=gen, dtype=torch.float64)
    p = torch.nn.Parameter(b.clone())
    opt = ExponentiatedGradient([{"params": [p], "segments": segs, "clamp_min": None}], lr=0.1)
    p.grad = g
    opt.step()
    start = 0
    for k in segs:
        part = b[start:start + k] * torch.exp(-0.1 * g[start:start + k])
        torch.testing.assert_close(p.detach()[start:start + k], part / part.sum())
        start += k


def test_projected_sgd_projection() -> None:
    v = torch.tensor([[0.5, 0.5, 0.5], [2.0, 0.0, -1.0], [0.2, 0.3, 0.5]])
    out = project_simplex(v)
    torch.testing.assert_close(out, torch.tensor([[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5]]))
    p = torch.nn.Parameter(torch.full((2, 3), 1 / 3))
    p.grad = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    ProjectedSGD([p], lr=0.3).step()
    torch.testing.assert_close(p.sum(-1), torch.ones(2))


def _mixture_problem(seed: int = 0):
    """Fixed small problem: y = sum_o w_o * f_o(x); the data were made by op 3 alone."""
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(8, 256, 16, generator=gen)  # 8 'ops' applied to 256 inputs
    target = feats[3] + 0.1 * torch.randn(256, 16, generator=gen)
    return feats, target


def _run(parameterization: str, optimizer: str, steps: int = 150) -> tuple[list[float], ArchParameters]:
    feats, target = _mixture_problem()
    spec = ArchTensorSpec("normal", (1, 8), "ops")
    arch = ArchParameters([spec], parameterization, seed=0)
    if optimizer == "exp_grad":
        opt = ExponentiatedGradient(arch.param_groups(0.1, None), lr=0.1)
    else:  # DARTS: Adam 3e-4, betas (0.5, 0.999), wd 1e-3
        opt = torch.optim.Adam(arch.parameters(), lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    hs = []
    for _ in range(steps):
        w = arch.weights()["normal"][0]
        pred = (w[:, None, None] * feats).sum(0)
        loss = ((pred - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        hs.append(float(entropy(arch.probabilities()["normal"])))
    return hs, arch


def test_entropy_falls_faster_under_gaea_than_softmax_adam() -> None:
    gaea, gaea_arch = _run("simplex", "exp_grad")
    darts, _ = _run("logits", "adam")
    assert gaea[0] < math.log(8) + 1e-6
    assert gaea[-1] < 0.5 * math.log(8), gaea[-1]       # GAEA becomes sparse
    assert darts[-1] > 0.95 * math.log(8), darts[-1]     # softmax+Adam stays near uniform
    assert all(g < d for g, d in zip(gaea[10:], darts[10:]))
    assert int(gaea_arch.probabilities()["normal"].argmax()) == 3  # and EG finds the planted op
