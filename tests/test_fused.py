"""runtime.fused: the fused DARTS search cell equals the per-edge reference cell.

Tolerances: fp32 forward/loss/BN statistics agree to ~1e-6 in practice (only
the summation order of the mixture differs); the tests assert atol=1e-5 with
rtol=1e-4, and 1e-5/1e-4 for weight and architecture gradients.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from nas_cli.spaces.base import RelaxationSpec, count_parameters
from nas_cli.spaces.darts import DartsSpace, DartsSupernet, SearchCell
from nas_cli.spaces.darts_fused import FusedSearchCell
from tests.conftest import assert_searches_match

ATOL, RTOL = 1e-5, 1e-4

CASES = {
    "darts": ({"init_channels": 8, "layers": 3}, RelaxationSpec()),
    "pcdarts_k4_edges": ({"init_channels": 8, "layers": 3}, RelaxationSpec(partial_channels=4, learn_edges=True)),
    "imagenet_k2_edges": ({"init_channels": 8, "layers": 3, "stem": "imagenet"},
                          RelaxationSpec(partial_channels=2, learn_edges=True)),
    "no_zero": ({"init_channels": 8, "layers": 3, "exclude_zero": True}, RelaxationSpec()),
}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny nets are kernel-launch bound: one thread avoids oversubscribing the shared CPU (20x faster)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def build_pair(case: str, seed: int = 0) -> tuple[DartsSpace, RelaxationSpec, DartsSupernet, DartsSupernet]:
    cfg, relax = CASES[case]
    space = DartsSpace(cfg)
    torch.manual_seed(seed)
    ref = space.build_supernet(10, 3, relax)
    torch.manual_seed(seed)
    fused = space.build_supernet(10, 3, relax, fused=True)
    assert isinstance(fused.cells[0], FusedSearchCell) and isinstance(ref.cells[0], SearchCell)
    return space, relax, ref, fused


def random_arch(space: DartsSpace, relax: RelaxationSpec, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    arch = {}
    for spec in space.arch_specs(relax):
        t = torch.rand(spec.shape, generator=g) + 0.05
        arch[spec.name] = (t / t.sum(-1, keepdim=True) if spec.kind == "ops" else t).requires_grad_(True)
    return arch


def image_size(case: str) -> int:
    return 32 if case.startswith("imagenet") else 8


def grads_by_state_name(model: nn.Module, grads: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map ``grads`` (aligned with ``model.parameters()``) to state_dict names via a copy holding them."""
    holder = copy.deepcopy(model)
    with torch.no_grad():
        for p, g in zip(holder.parameters(), grads):
            p.copy_(g)
    return holder.state_dict()


def assert_states_close(a: dict, b: dict, atol: float = ATOL) -> None:
    assert list(a) == list(b)
    for k in a:
        assert a[k].shape == b[k].shape, k
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=RTOL, msg=k)


@pytest.mark.parametrize("case", list(CASES))
def test_same_seed_same_state_dict_and_param_count(case: str) -> None:
    _, _, ref, fused = build_pair(case)
    a, b = ref.state_dict(), fused.state_dict()
    assert list(a) == list(b)  # same keys in the same order
    for k in a:
        assert a[k].shape == b[k].shape and a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    assert count_parameters(fused) == count_parameters(ref)
    # the stacked storage really is fused: no per-edge modules remain
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.cells[0].fused.modules())


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize("case", list(CASES))
def test_forward_loss_and_gradients_match(case: str, device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # TF32 (PyTorch's default for cuDNN convs) rounds both paths differently at ~1e-3: compare in full fp32
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    space, relax, ref, fused = build_pair(case)
    ref, fused = ref.to(device), fused.to(device)
    arch = {k: v.detach().to(device).requires_grad_(True) for k, v in random_arch(space, relax).items()}
    x = torch.randn(4, 3, image_size(case), image_size(case), generator=torch.Generator().manual_seed(2)).to(device)
    y = torch.tensor([0, 3, 5, 9], device=device)
    results = []
    for net in (ref, fused):
        net.train()
        out = net(x, arch)
        loss = nn.functional.cross_entropy(out, y)
        params = list(net.parameters())
        grads = torch.autograd.grad(loss, [*arch.values(), *params])
        results.append((out, loss, grads[:len(arch)], grads_by_state_name(net, list(grads[len(arch):])),
                        net.state_dict()))
    (o1, l1, ga1, gw1, s1), (o2, l2, ga2, gw2, s2) = results
    torch.testing.assert_close(o2, o1, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(l2, l1, atol=ATOL, rtol=RTOL)
    for name, a, b in zip(arch, ga1, ga2):
        torch.testing.assert_close(b, a, atol=ATOL, rtol=RTOL, msg=name)
    param_names = [n for n, _ in ref.named_parameters()]
    assert len(param_names) > 20
    assert_states_close({n: gw1[n] for n in param_names}, {n: gw2[n] for n in param_names})
    # BN running statistics (and counters) after one training-mode forward
    assert_states_close(s1, s2)
    assert all(torch.equal(s1[k], s2[k]) for k in s1 if k.endswith("num_batches_tracked"))
    assert int(s2[next(k for k in s2 if "edges" in k and k.endswith("num_batches_tracked"))]) == 1
    # eval mode (running statistics in use) agrees too
    ref.eval(), fused.eval()
    with torch.no_grad():
        torch.testing.assert_close(fused(x, arch), ref(x, arch), atol=ATOL, rtol=RTOL)


def perturbed_state(net: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A state_dict with random values everywhere (weights, running stats, counters)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in net.state_dict().items():
        if v.dtype == torch.long:
            out[k] = torch.randint(0, 100, v.shape, generator=g)
        elif k.endswith("running_var"):
            out[k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            out[k] = torch.randn(v.shape, generator=g)
    return out


@pytest.mark.parametrize("case", ["darts", "pcdarts_k4_edges"])
def test_load_state_dict_round_trip(case: str) -> None:
    space, relax, ref, fused = build_pair(case)
    state = perturbed_state(ref, seed=5)
    ref.load_state_dict(state)
    fused.load_state_dict(ref.state_dict())  # reference -> fused
    assert_states_close(fused.state_dict(), state, atol=0)
    torch.manual_seed(99)
    ref2 = space.build_supernet(10, 3, relax)
    ref2.load_state_dict(fused.state_dict())  # fused -> reference
    assert_states_close(ref2.state_dict(), state, atol=0)
    arch = random_arch(space, relax)
    x = torch.randn(2, 3, 8, 8)
    ref2.eval(), fused.eval()
    with torch.no_grad():
        torch.testing.assert_close(fused(x, arch), ref2(x, arch), atol=ATOL, rtol=RTOL)
    # strict loading still reports missing reference keys
    partial = dict(ref.state_dict())
    partial.pop(next(k for k in partial if "edges.3.ops.4" in k))
    with pytest.raises(RuntimeError):
        fused.load_state_dict(partial)


def test_state_dict_views_and_keep_vars() -> None:
    """state_dict values share storage with the stacked tensors (like the reference's); keep_vars keeps grads."""
    _, _, _, fused = build_pair("darts")
    key = next(k for k in fused.state_dict() if k.startswith("cells.1.edges.2.ops.4.") and k.endswith("weight"))
    with torch.no_grad():
        fused.state_dict()[key].fill_(3.0)
    assert (fused.state_dict()[key] == 3.0).all()
    assert fused.state_dict(keep_vars=True)[key].requires_grad
    meta = fused.state_dict()._metadata  # type: ignore[attr-defined]
    assert "cells.1.edges.2.ops.1.1" in meta and not any(".fused" in k for k in meta)


def test_deepcopy_is_independent() -> None:
    space, relax, ref, fused = build_pair("pcdarts_k4_edges")
    twin = copy.deepcopy(fused)
    assert_states_close(twin.state_dict(), fused.state_dict(), atol=0)
    twin.load_state_dict(perturbed_state(ref, seed=3))
    assert_states_close(fused.state_dict(), ref.state_dict(), atol=0)  # original untouched
    arch = random_arch(space, relax)
    twin(torch.randn(2, 3, 8, 8), arch).sum().backward()
    assert all(p.grad is None for p in fused.parameters())


def compare_cells(ops: list[str], reduction: bool) -> torch.Tensor:
    """One cell with op list ``ops``, reference vs fused: outputs, arch gradients and state (BN
    running statistics) agree; returns the fused cell's arch gradient."""
    torch.manual_seed(0)
    ref = SearchCell(3, 6, 6, 4, reduction=reduction, reduction_prev=False, op_names=ops)
    torch.manual_seed(0)
    fused = FusedSearchCell(SearchCell(3, 6, 6, 4, reduction=reduction, reduction_prev=False, op_names=ops))
    s0, s1 = torch.randn(2, 6, 8, 8), torch.randn(2, 6, 8, 8)
    w = torch.softmax(torch.randn(9, len(ops)), 1).requires_grad_(True)
    a, b = ref(s0, s1, w, None), fused(s0, s1, w, None)
    torch.testing.assert_close(b, a, atol=ATOL, rtol=RTOL)
    ga, = torch.autograd.grad(a.square().sum(), w)
    gb, = torch.autograd.grad(b.square().sum(), w)
    torch.testing.assert_close(gb, ga, atol=ATOL, rtol=RTOL)
    assert_states_close(fused.state_dict(), ref.state_dict())
    assert_state_round_trips(ref, fused)
    return gb


def assert_state_round_trips(ref: nn.Module, fused: nn.Module) -> None:
    """Strict loads both ways between the layouts, and of the fused cell's own state (op lists
    without a BN op leave the fused counter vector empty: nothing in the reference layout)"""
    fused.load_state_dict(fused.state_dict())
    fused.load_state_dict(ref.state_dict())
    ref.load_state_dict(fused.state_dict())
    assert_states_close(fused.state_dict(), ref.state_dict())


def test_non_contiguous_op_columns() -> None:
    """'none' in the middle of the op list: the fused cell gathers the other columns."""
    gb = compare_cells(["max_pool_3x3", "none", "skip_connect", "sep_conv_3x3", "dil_conv_3x3"], reduction=True)
    assert torch.all(gb[:, 1] == 0)  # 'none' gets exactly zero gradient (as x*0 does in the reference)


def test_channels_last_and_bf16_autocast() -> None:
    space, relax, ref, fused = build_pair("pcdarts_k4_edges")
    ref = ref.to(memory_format=torch.channels_last)
    fused = fused.to(memory_format=torch.channels_last)
    arch = random_arch(space, relax)
    x = torch.randn(4, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fused(x, arch), ref(x, arch), atol=ATOL, rtol=RTOL)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = ref(x, arch), fused(x, arch)
    assert b.dtype == a.dtype
    torch.testing.assert_close(b.float(), a.float(), atol=0.1, rtol=0.05)


# ------------------------------------------------------------- full search
#: method -> (extra overrides, arch tolerance).  GAEA: no warmup and a large exp-grad step so the
#: architecture moves well beyond rounding noise (otherwise near-ties decide the genotype); its arch
#: params agree to ~1e-7.  DARTS uses Adam, which divides by sqrt(v): rounding-level differences in
#: near-zero gradient entries become up to about one lr-sized (3e-4) step, hence the looser atol.
SEARCHES = {
    "gaea_pcdarts": (["objective.warmup_epochs=0", "optimizer.lr=5", "optimizer.edge_lr=5"], 1e-5),
    "darts": ([], 3e-4),
}


@pytest.mark.parametrize("method", list(SEARCHES))
def test_tiny_search_fused_equals_reference(method: str, tiny_cfg, tmp_path: Path) -> None:
    from nas_cli.stages.search import run_search

    extra, atol = SEARCHES[method]
    results = {}
    for fused in (True, False):
        out = tmp_path / str(fused)
        cfg = tiny_cfg(f"method={method}", f"runtime.fused={str(fused).lower()}", "runtime.num_threads=1", *extra)
        summary = run_search(cfg, out)
        ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
        results[fused] = (summary["genotype"], ckpt["arch"], ckpt["model"], summary)
    assert_searches_match(results, atol)


def test_grouped_pointwise_matmul_equals_grouped_conv() -> None:
    from nas_cli.spaces.darts_fused import grouped_pointwise

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 12, 5, 5, generator=g)
    w = torch.randn(8, 6, 1, 1, generator=g)  # 2 groups, 6 -> 4 channels each
    want = nn.functional.conv2d(x, w, groups=2)
    torch.testing.assert_close(grouped_pointwise(x, w, 2), want, atol=ATOL, rtol=RTOL)  # matmul path
    x_cl = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(grouped_pointwise(x_cl, w, 2), want, atol=ATOL, rtol=RTOL)  # conv path


@pytest.mark.parametrize("ops", [["skip_connect", "none"], ["max_pool_3x3", "avg_pool_3x3"],
                                 ["skip_connect", "sep_conv_3x3"]])
@pytest.mark.parametrize("reduction", [False, True])
def test_op_subsets_with_and_without_bn_ops(ops: list[str], reduction: bool) -> None:
    """Groups whose ops are all identities (no shared BN), all BN-ending, or mixed: same outputs,
    arch gradients and running statistics as the reference, in both cell kinds (stride-2 skip is a
    FactorizedReduce)."""
    compare_cells(ops, reduction)


def test_one_shared_batchnorm_per_edge_group(monkeypatch: pytest.MonkeyPatch) -> None:
    """The speed structure: every BN-ending op of a group is normalised by ONE BatchNorm call over
    the concatenated (op, edge) stack; only the SepConvs' inner BNs run per op."""
    from nas_cli.spaces import darts_fused

    torch.manual_seed(0)
    cell = FusedSearchCell(SearchCell(4, 8, 8, 4, reduction=False, reduction_prev=False,
                                      op_names=DartsSpace({}).op_names))
    calls: list[int] = []
    forward = darts_fused._BN.forward
    monkeypatch.setattr(darts_fused._BN, "forward", lambda self, x: calls.append(x.shape[1]) or forward(self, x))
    cell(torch.randn(2, 8, 8, 8), torch.randn(2, 8, 8, 8), torch.softmax(torch.randn(14, 8), 1), None)
    groups = list(cell.fused.parts)
    assert len(groups) == 4  # a normal cell: one stride-1 group per node
    n_sep = sum(1 for g in groups for op in g.ops if len(op.stages) > 2)  # SepConv: two halves
    assert len(calls) == len(groups) + n_sep == 4 + 4 * 2
    # max, avg, sep3, sep5, dil3, dil5 (not the identity skip) share the BN: 6 ops x E edges x 4 channels
    assert sorted(calls)[-4:] == [6 * e * 4 for e in (2, 3, 4, 5)]
