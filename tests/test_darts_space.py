"""DARTS search space: ops, supernet (DARTS + PC-DARTS), parameter counts, derivation."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from nas_cli.errors import ConfigError
from nas_cli.spaces import SPACES, RelaxationSpec, count_parameters
from nas_cli.spaces.darts import DartsSpace, MixedOp, PartialMixedOp, SearchCell, derive_cell, edge_offset
from nas_cli.spaces.darts_ops import OPS, PRIMITIVES, Identity, Zero, channel_shuffle
from nas_cli.spaces.genotypes import Genotype, iter_published

DARTS = RelaxationSpec()
PCDARTS = RelaxationSpec(partial_channels=4, learn_edges=True)
OPS7 = [p for p in PRIMITIVES if p != "none"]


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    """Tiny CPU convs run faster on one thread (and are immune to OpenMP contention with other jobs)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def small_space(**kw: object) -> DartsSpace:
    cfg = {"init_channels": 8, "layers": 5}
    cfg.update(kw)
    return DartsSpace(cfg)


def uniform_arch(space: DartsSpace, relax: RelaxationSpec) -> dict[str, torch.Tensor]:
    """Simplex weights (GAEA-style leaves): op rows 1/|O|, edges 1/(2+i) per node."""
    arch = {}
    for spec in space.arch_specs(relax):
        if spec.kind == "ops":
            arch[spec.name] = torch.full(spec.shape, 1.0 / spec.shape[1])
        else:
            assert spec.segments is not None
            arch[spec.name] = torch.cat([torch.full((n,), 1.0 / n) for n in spec.segments])
    return arch


# ------------------------------------------------------------------ ops
@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("search", [False, True])
def test_op_output_shapes(name: str, stride: int, search: bool) -> None:
    op = OPS[name](8, stride, not search, search)
    out = op(torch.randn(2, 8, 8, 8))
    assert out.shape == (2, 8, 8 // stride, 8 // stride)


def test_op_structure_matches_spec() -> None:
    # search pools get a non-affine BN; eval pools have none
    for name in ("max_pool_3x3", "avg_pool_3x3"):
        bns = [m for m in OPS[name](8, 1, False, True).modules() if isinstance(m, nn.BatchNorm2d)]
        assert len(bns) == 1 and not bns[0].affine
        assert not any(isinstance(m, nn.BatchNorm2d) for m in OPS[name](8, 1, True, False).modules())
    # affine flag reaches every BN; convs are bias-free
    for name in OPS:
        for affine in (False, True):
            op = OPS[name](8, 2, affine, False)
            assert all(m.affine == affine for m in op.modules() if isinstance(m, nn.BatchNorm2d))
            assert all(m.bias is None for m in op.modules() if isinstance(m, nn.Conv2d))
    assert isinstance(OPS["skip_connect"](8, 1, True, False), Identity)
    assert not isinstance(OPS["skip_connect"](8, 2, True, False), Identity)
    # none: zeros; stride 2 keeps every second row/column shape
    z = OPS["none"](8, 2, False, True)
    assert isinstance(z, Zero) and torch.equal(z(torch.randn(1, 8, 6, 6)), torch.zeros(1, 8, 3, 3))
    # per-op parameter formulas (darts_space.md §8, affine BN), C=8
    C = 8
    expect = {
        "sep_conv_3x3": 2 * (9 * C + C * C + 2 * C),
        "sep_conv_5x5": 2 * (25 * C + C * C + 2 * C),
        "dil_conv_3x3": 9 * C + C * C + 2 * C,
        "dil_conv_5x5": 25 * C + C * C + 2 * C,
        "max_pool_3x3": 0,
        "avg_pool_3x3": 0,
        "none": 0,
    }
    for name, n in expect.items():
        assert count_parameters(OPS[name](C, 1, True, False)) == n, name
    assert count_parameters(OPS["skip_connect"](C, 2, True, False)) == C * C + 2 * C
    assert count_parameters(OPS["avg_pool_3x3"](C, 1, True, False)) == 0
    # avg pool excludes padding from the divisor
    y = OPS["avg_pool_3x3"](1, 1, True, False)(torch.ones(1, 1, 4, 4))
    assert torch.allclose(y, torch.ones_like(y))


# ----------------------------------------------------------------- space
def test_registration_and_op_names() -> None:
    assert SPACES.get("darts") is DartsSpace
    assert DartsSpace({}).op_names == list(PRIMITIVES)
    assert DartsSpace({"exclude_zero": True}).op_names == OPS7
    assert DartsSpace({}).op_names is not DartsSpace({}).op_names  # never a shared mutable list


def test_arch_specs() -> None:
    specs = DartsSpace({}).arch_specs(PCDARTS)
    assert [(s.name, s.shape, s.kind) for s in specs] == [
        ("normal", (14, 8), "ops"),
        ("reduce", (14, 8), "ops"),
        ("normal_edges", (14,), "edges"),
        ("reduce_edges", (14,), "edges"),
    ]
    assert specs[2].segments == (2, 3, 4, 5)
    assert [s.name for s in DartsSpace({"exclude_zero": True}).arch_specs(DARTS)] == ["normal", "reduce"]
    assert DartsSpace({"exclude_zero": True}).arch_specs(DARTS)[0].shape == (14, 7)
    five = DartsSpace({"nodes": 5}).arch_specs(PCDARTS)
    assert five[0].shape == (20, 8) and five[2].segments == (2, 3, 4, 5, 6)


@pytest.mark.parametrize(
    "cfg,relax,expected",
    [
        ({}, DARTS, 1_930_618),
        ({"exclude_zero": True}, DARTS, 1_930_618),
        ({}, PCDARTS, 299_578),
        ({"exclude_zero": True}, PCDARTS, 299_578),
        ({}, RelaxationSpec(partial_channels=4), 299_578),
    ],
)
def test_supernet_parameter_counts(cfg: dict, relax: RelaxationSpec, expected: int) -> None:
    net = DartsSpace(cfg).build_supernet(10, 3, relax)
    assert count_parameters(net) == expected


@pytest.mark.parametrize("relax", [DARTS, PCDARTS, RelaxationSpec(partial_channels=2)])
@pytest.mark.parametrize("exclude_zero", [False, True])
def test_supernet_output_shape(relax: RelaxationSpec, exclude_zero: bool) -> None:
    space = small_space(exclude_zero=exclude_zero)
    net = space.build_supernet(7, 3, relax)
    out = net(torch.randn(2, 3, 16, 16), uniform_arch(space, relax))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


def test_imagenet_stem_supernet() -> None:
    space = small_space(stem="imagenet", layers=3)
    relax = RelaxationSpec(partial_channels=2, learn_edges=True)
    net = space.build_supernet(5, 3, relax)
    assert net(torch.randn(2, 3, 64, 64), uniform_arch(space, relax)).shape == (2, 5)
    assert net.cells[0].preprocess0.__class__.__name__ == "FactorizedReduce"  # reduction_prev for cell 0


def test_supernet_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown sampling 'gumbel'"):
        DartsSpace({}).build_supernet(10, 3, RelaxationSpec(sampling="gumbel"))
    with pytest.raises(ConfigError):
        DartsSpace({"init_channels": 12}).build_supernet(10, 3, RelaxationSpec(partial_channels=4))
    with pytest.raises(ConfigError):
        DartsSpace({"stem": "mnist"})


def test_supernet_bn_flags() -> None:
    net = DartsSpace({}).build_supernet(10, 3, PCDARTS)
    stem_bn = [m for m in net.stem.modules() if isinstance(m, nn.BatchNorm2d)]
    cell_bn = [m for m in net.cells.modules() if isinstance(m, nn.BatchNorm2d)]
    assert stem_bn and all(m.affine for m in stem_bn)
    assert cell_bn and not any(m.affine for m in cell_bn)
    # reductions at L//3 and 2L//3
    assert [c.reduction for c in net.cells] == [i in (2, 5) for i in range(8)]


# ------------------------------------------------------------- PC-DARTS
def test_channel_shuffle_permutation() -> None:
    x = torch.arange(8.0).view(1, 8, 1, 1)
    assert channel_shuffle(x, 4).flatten().tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


@pytest.mark.parametrize("stride", [1, 2])
def test_partial_mixed_op(stride: int) -> None:
    torch.manual_seed(0)
    C, K = 16, 4
    op = PartialMixedOp(C, stride, list(PRIMITIVES), K).eval()
    x = torch.randn(2, C, 8, 8)
    w = torch.softmax(torch.randn(len(PRIMITIVES)), 0)
    y = op(x, w)
    assert y.shape == (2, C, 8 // stride, 8 // stride)
    # ops are built for C/K channels
    assert op.ops[PRIMITIVES.index("sep_conv_3x3")].op[0].op[1].in_channels == C // K
    bypass = x if stride == 1 else nn.functional.max_pool2d(x, 2, 2)
    mixed = sum(w[o] * m(x[:, : C // K]) for o, m in enumerate(op.ops))
    for c_out in range(C):
        i, g = divmod(c_out, K)  # output channel i*K + g comes from concat channel g*(C/K) + i
        src = g * (C // K) + i
        if g == 0:
            assert torch.allclose(y[:, c_out], mixed[:, i], atol=1e-6)
        else:  # the last (K-1)/K channels pass through untouched
            assert torch.equal(y[:, c_out], bypass[:, src])


# ------------------------------------------------------------- weights
def test_mixed_op_is_weighted_sum() -> None:
    torch.manual_seed(0)
    op = MixedOp(4, 1, list(PRIMITIVES)).eval()
    x = torch.randn(2, 4, 6, 6)
    w = torch.zeros(8)
    w[PRIMITIVES.index("skip_connect")] = 1.0
    assert torch.allclose(op(x, w), x)
    w = torch.rand(8)
    expect = sum(w[o] * m(x) for o, m in enumerate(op.ops))
    assert torch.allclose(op(x, w), expect, atol=1e-6)


@pytest.mark.parametrize("k", [1, 4])
def test_edge_weights_scale_node_inputs(k: int) -> None:
    torch.manual_seed(0)
    C = 8
    cell = SearchCell(4, 12, 12, C, reduction=False, reduction_prev=False, op_names=PRIMITIVES, k=k).eval()
    s0, s1 = torch.randn(2, 12, 6, 6), torch.randn(2, 12, 6, 6)
    ops = torch.softmax(torch.randn(14, 8), 1)
    edges = torch.full((14,), 0.5)
    base = cell(s0, s1, ops, edges)
    # changing one edge weight changes the output
    edges2 = edges.clone()
    edges2[1] = 0.9
    assert not torch.allclose(base, cell(s0, s1, ops, edges2))
    # weight 0 on every edge of node 0 except input 1 == computing that one edge alone
    edges3 = edges.clone()
    edges3[0], edges3[1] = 0.0, 1.0
    out = cell(s0, s1, ops, edges3)
    alone = cell.edges[1](cell.preprocess1(s1), ops[1])
    assert torch.allclose(out[:, :C], alone, atol=1e-6)
    # node 3 (edges 9..13) with only input j=3 (node 1) weighted: equals 0.7 * that edge
    edges4 = edges.clone()
    edges4[9:14] = torch.tensor([0.0, 0.0, 0.0, 0.7, 0.0])
    out4 = cell(s0, s1, ops, edges4)
    node1 = out4[:, C : 2 * C]
    assert torch.allclose(out4[:, 3 * C :], 0.7 * cell.edges[12](node1, ops[12]), atol=1e-6)
    # no edge weights == all-ones edge weights
    assert torch.allclose(cell(s0, s1, ops, None), cell(s0, s1, ops, torch.ones(14)), atol=1e-6)


def test_gradient_reaches_every_arch_tensor() -> None:
    torch.manual_seed(0)
    space = small_space()
    net = space.build_supernet(10, 3, PCDARTS)
    arch = {n: t.clone().requires_grad_(True) for n, t in uniform_arch(space, PCDARTS).items()}
    loss = nn.functional.cross_entropy(net(torch.randn(4, 3, 16, 16), arch), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert set(arch) == {"normal", "reduce", "normal_edges", "reduce_edges"}
    for name, t in arch.items():
        assert t.grad is not None, name
        nonzero_rows = (t.grad.abs().reshape(t.shape[0], -1).sum(1) > 0).all()
        assert nonzero_rows, name


# ------------------------------------------------------------ derivation
def reference_derive(W: np.ndarray, op_names: list[str]) -> list[tuple[str, int]]:
    """Independent re-statement of darts_space.md §7 using numpy stable sorting."""
    cols = [o for o, n in enumerate(op_names) if n != "none"]
    out = []
    for i in range(4):
        rows = W[edge_offset(i) : edge_offset(i) + 2 + i][:, cols]
        order = np.argsort(-rows.max(1), kind="stable")[:2]
        out += [(op_names[cols[int(np.argmax(rows[j]))]], int(j)) for j in order]
    return out


def test_discretize_ignores_none() -> None:
    W = torch.full((14, 8), 0.01)
    # node 0: 'none' dominates edge 0, but the op chosen is the best non-none op
    W[0] = torch.tensor([0.9, 0.01, 0.01, 0.01, 0.05, 0.01, 0.01, 0.0])
    W[1, PRIMITIVES.index("max_pool_3x3")] = 0.04
    # node 1: edge j=0 has the largest 'none' but the weakest real op -> not kept
    W[2] = torch.tensor([0.99, 0.001, 0.001, 0.001, 0.001, 0.001, 0.001, 0.001])
    W[3, PRIMITIVES.index("sep_conv_5x5")] = 0.3
    W[4, PRIMITIVES.index("dil_conv_3x3")] = 0.2
    geno = DartsSpace({}).discretize({"normal": W, "reduce": W})
    assert geno.normal[:4] == (("sep_conv_3x3", 0), ("max_pool_3x3", 1), ("sep_conv_5x5", 1), ("dil_conv_3x3", 2))
    assert all(op != "none" for op, _ in geno.normal + geno.reduce)
    assert geno.normal_concat == geno.reduce_concat == (2, 3, 4, 5)


def test_discretize_edge_weights_change_kept_edges() -> None:
    space = DartsSpace({})
    W = torch.full((14, 8), 0.01)
    for j, v in enumerate([0.5, 0.4, 0.3]):  # node 1 edges, op strength decreasing with j
        W[edge_offset(1) + j, PRIMITIVES.index("sep_conv_3x3")] = v
    plain = space.discretize({"normal": W, "reduce": W})
    assert plain.normal[2:4] == (("sep_conv_3x3", 0), ("sep_conv_3x3", 1))
    b = torch.cat([torch.full((n,), 1.0 / n) for n in (2, 3, 4, 5)])
    b[2:5] = torch.tensor([0.2, 0.3, 0.5])  # products: 0.10, 0.12, 0.15
    pc = space.discretize({"normal": W, "reduce": W, "normal_edges": b, "reduce_edges": b})
    assert pc.normal[2:4] == (("sep_conv_3x3", 2), ("sep_conv_3x3", 1))
    # the edge weight never changes the op chosen on an edge
    assert [op for op, _ in pc.normal] == [op for op, _ in plain.normal]


def test_discretize_ties() -> None:
    space = DartsSpace({})
    uniform = torch.full((14, 8), 1 / 8)
    geno = space.discretize({"normal": uniform, "reduce": uniform})
    # all edges tie -> inputs 0, 1; all ops tie -> first non-none op
    assert geno.normal == (("max_pool_3x3", 0), ("max_pool_3x3", 1)) * 4
    W = uniform.clone()
    W[edge_offset(2) + 0] = 0.05  # node 2: input 0 weaker, inputs 1..3 tie -> 1, 2
    W[edge_offset(2) + 3, 5] = 0.2  # ... unless input 3 is stronger -> 3 first, then 1
    W[edge_offset(3) + 2, [4, 5]] = 0.3  # tie between two ops: first (sep_conv_3x3) wins
    geno = space.discretize({"normal": W, "reduce": uniform})
    assert geno.normal[4:6] == (("sep_conv_5x5", 3), ("max_pool_3x3", 1))
    assert geno.normal[6:8] == (("sep_conv_3x3", 2), ("max_pool_3x3", 0))


def test_discretize_exclude_zero_matrices() -> None:
    space = DartsSpace({"exclude_zero": True})
    W = torch.full((14, 7), 0.1)
    W[0, 0] = 0.4  # max_pool_3x3 is column 0 without 'none'
    W[1, 6] = 0.5  # dil_conv_5x5
    geno = space.discretize({"normal": W, "reduce": W})
    assert geno.normal[:2] == (("dil_conv_5x5", 1), ("max_pool_3x3", 0))
    with pytest.raises(ValueError):
        space.discretize({"normal": torch.rand(14, 8), "reduce": torch.rand(14, 8)})


@pytest.mark.parametrize("exclude_zero", [False, True])
def test_discretize_matches_independent_rule_on_random_weights(exclude_zero: bool) -> None:
    space = DartsSpace({"exclude_zero": exclude_zero})
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        arch = {
            "normal": torch.softmax(torch.randn(14, len(space.op_names), generator=gen), 1),
            "reduce": torch.softmax(torch.randn(14, len(space.op_names), generator=gen), 1),
            "normal_edges": torch.rand(14, generator=gen),
            "reduce_edges": torch.rand(14, generator=gen),
        }
        geno = space.discretize(arch)
        for kind in ("normal", "reduce"):
            W = (arch[kind] * arch[f"{kind}_edges"][:, None]).double().numpy()
            assert list(getattr(geno, kind)) == reference_derive(W, space.op_names)
        geno.validate()


def test_discretize_recovers_published_genotypes() -> None:
    """Weights peaked on a genotype's (edge, op) choices derive exactly that genotype (order included)."""
    space = DartsSpace({})
    for name, geno in iter_published():
        arch = {}
        for kind in ("normal", "reduce"):
            W = torch.zeros(14, 8)
            for k, (op, j) in enumerate(getattr(geno, kind)):
                W[edge_offset(k // 2) + j, PRIMITIVES.index(op)] = 1.0 if k % 2 == 0 else 0.9
            arch[kind] = W
        assert space.discretize(arch) == geno, name


def test_genotype_json_and_str_via_space() -> None:
    space = DartsSpace({})
    geno = space.discretize({"normal": torch.full((14, 8), 1 / 8), "reduce": torch.full((14, 8), 1 / 8)})
    assert space.genotype_from_json(space.genotype_to_json(geno)) == geno
    text = space.genotype_str(geno)
    assert "\n" not in text and text.startswith("N: max_pool_3x3@0 max_pool_3x3@1 |") and " ; R: " in text
    odd = Genotype(geno.normal, (2, 3), geno.reduce, geno.reduce_concat)
    assert "concat=[2, 3]" in space.genotype_str(odd)


@pytest.mark.parametrize("k", [1, 2])
def test_discrete_supernet_runs_only_the_sampled_ops(k: int) -> None:
    """GDAS / RS-WS on the DARTS space: with one-hot weights the discrete forward equals the full
    mixture's value, unsampled ops receive no gradient, and every weight entry gets the
    straight-through gradient."""
    import copy

    torch.manual_seed(0)
    space = DartsSpace({"init_channels": 8, "layers": 3})
    hard = space.build_supernet(10, 3, RelaxationSpec(partial_channels=k, sampling="hard"), fused=True)
    assert hard.discrete and not hard.fused  # fusion runs every op: not for one-hot samples
    mixture = copy.deepcopy(hard)
    mixture.discrete = False
    idx = {kind: torch.randint(0, 8, (14,)) for kind in ("normal", "reduce")}
    arch = {kind: torch.nn.functional.one_hot(i, 8).float().requires_grad_(True) for kind, i in idx.items()}
    x = torch.randn(4, 3, 8, 8)
    out_hard = hard(x, arch)
    torch.testing.assert_close(out_hard, mixture(x, {kk: v.detach() for kk, v in arch.items()}), atol=1e-5, rtol=1e-5)
    out_hard.sum().backward()
    for kind in ("normal", "reduce"):
        assert (arch[kind].grad != 0).float().mean() > 0.9  # straight-through: every entry
    cell = hard.cells[0]
    e = 0
    unused = [o for o in range(8) if o != int(idx["normal"][e])]
    for o in unused:
        for p in cell.edges[e].ops[o].parameters():
            assert p.grad is None


def test_gdas_search_on_darts_space(tiny_cfg, tmp_path) -> None:
    from nas_cli.stages.search import run_search

    summary = run_search(tiny_cfg("method=gdas", "search.epochs=1"), tmp_path)
    assert summary["status"] == "complete" and len(summary["genotype"]["normal"]) == 8


@pytest.mark.parametrize("k", [1, 4])
def test_hard_forward_equals_the_per_edge_formula(k: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The prepared one-hot forward (HardEdges + addcmul) equals the spec's per-edge
    ``w[k]·op_k(x) + (Σ_o w[o] - w[k])``: outputs and the gradients of the sample and the weights."""
    import nas_cli.spaces.darts as darts

    torch.manual_seed(0)
    space = DartsSpace({"init_channels": 8, "layers": 3})
    relax = RelaxationSpec(partial_channels=k, sampling="hard")
    net = space.build_supernet(10, 3, relax)
    gen = torch.Generator().manual_seed(2)
    logits = {s.name: torch.randn(s.shape, generator=gen).requires_grad_(True) for s in space.arch_specs(relax)}

    def sample() -> dict[str, torch.Tensor]:
        out = {}
        for name, a in logits.items():  # op tensors only (no learned edge weights here)
            p = a.softmax(-1)
            hard = torch.nn.functional.one_hot(p.argmax(-1), p.shape[-1]).to(p.dtype)
            out[name] = hard - p.detach() + p
        return out

    x = torch.randn(2, 3, 8, 8, generator=gen)
    params = [p for p in net.parameters()]

    def grads() -> tuple[torch.Tensor, list]:
        torch.manual_seed(5)
        y = net(x, sample())
        g = torch.autograd.grad(y.square().sum(), [*logits.values(), *params], allow_unused=True)
        return y, list(g)

    got = grads()

    def per_edge(ops, x, weights, chosen):  # the formula, op by op
        if chosen is None:
            return darts._sum([w * op(x) for w, op in zip(weights.unbind(0), ops)])
        j = chosen[0]
        return weights[j] * ops[j](x) + (weights.sum() - weights[j])

    monkeypatch.setattr(darts, "_mix", per_edge)
    ref = grads()
    torch.testing.assert_close(got[0], ref[0], rtol=1e-5, atol=1e-6)
    for a, b in zip(got[1], ref[1]):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert got[1][0].abs().sum() > 0  # the sample's gradient reaches the op logits
