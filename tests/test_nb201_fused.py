"""runtime.fused for NAS-Bench-201: the source-grouped fused cell equals the per-edge reference cell.

Tolerances: fp32 outputs, losses and BN statistics agree to ~1e-6 in practice (only the summation
order of the mixture differs); the tests assert atol=1e-5, rtol=1e-4 for outputs, losses, BN
running statistics, every weight gradient and the architecture gradients.  Arch weights are
random and non-uniform, so a swapped edge/destination or a misplaced 1x1 tap changes the result
far beyond that (``test_comparison_catches_layout_mistakes`` proves it).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nas_cli.errors import ConfigError
from nas_cli.spaces.base import RelaxationSpec, count_parameters
from nas_cli.spaces.batchnorm import use_batchnorm_impl
from nas_cli.spaces.nb201 import NB201SearchCell, NB201Space, NB201Supernet, ReLUConvBN
from nas_cli.spaces.nb201_fused import FusedNB201Cell
from tests.conftest import assert_searches_match, make_cfg
from tests.test_fused import assert_state_round_trips, assert_states_close, grads_by_state_name, perturbed_state
from tests.test_fused import one_thread  # noqa: F401  (autouse: one torch thread for these tiny nets)
from tests.test_nb201 import NB_TINY

ATOL, RTOL = 1e-5, 1e-4

CASES = {
    "default": {"init_channels": 4, "cells_per_stage": 2},
    "no_zero": {"init_channels": 4, "cells_per_stage": 1, "exclude_zero": True},
    "no_running_stats": {"init_channels": 4, "cells_per_stage": 1, "track_running_stats": False},
}


def build_pair(case: str, merge: bool = True, seed: int = 0) -> tuple[NB201Space, NB201Supernet, NB201Supernet]:
    space = NB201Space(CASES[case])
    torch.manual_seed(seed)
    ref = space.build_supernet(10, 3, RelaxationSpec())
    torch.manual_seed(seed)
    fused = space.build_supernet(10, 3, RelaxationSpec(), fused=True)
    for cell in fused.cells:
        if isinstance(cell, FusedNB201Cell):
            cell.merge_1x1 = merge
    assert isinstance(ref.cells[0], NB201SearchCell) and isinstance(fused.cells[0], FusedNB201Cell)
    assert fused.fused and not ref.fused
    return space, ref, fused


def random_arch(n_ops: int, seed: int = 1) -> torch.Tensor:
    """Random, clearly non-uniform simplex rows (a swapped edge or op column changes the result)."""
    t = torch.rand(6, n_ops, generator=torch.Generator().manual_seed(seed)) + 0.05
    return (t / t.sum(-1, keepdim=True)).requires_grad_(True)


def images(n: int = 4, size: int = 8, seed: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def run_both(ref: nn.Module, fused: nn.Module, w: torch.Tensor, x: torch.Tensor) -> list[tuple]:
    """Per net: logits, loss, arch gradient, weight gradients by state name, state after the forward."""
    y = torch.arange(x.shape[0]) % 10
    out = []
    for net in (ref, fused):
        net.train()
        logits = net(x, {"cell": w})
        loss = F.cross_entropy(logits, y)
        params = list(net.parameters())
        grads = torch.autograd.grad(loss, [w, *params])
        out.append((logits, loss, grads[0], grads_by_state_name(net, list(grads[1:])), net.state_dict()))
    return out


def assert_same_results(ref: nn.Module, fused: nn.Module, w: torch.Tensor, x: torch.Tensor) -> None:
    (o1, l1, ga1, gw1, s1), (o2, l2, ga2, gw2, s2) = run_both(ref, fused, w, x)
    torch.testing.assert_close(o2, o1, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(l2, l1, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(ga2, ga1, atol=ATOL, rtol=RTOL)
    names = [n for n, _ in ref.named_parameters()]
    assert sum(".edges." in n for n in names) >= 12  # the cell conv weights are among them
    assert_states_close({n: gw1[n] for n in names}, {n: gw2[n] for n in names})
    # BN running statistics (and batch counters) after one training-mode forward
    assert_states_close(s1, s2)
    assert all(torch.equal(s1[k], s2[k]) for k in s1 if k.endswith("num_batches_tracked"))
    # eval mode: running statistics in use (or batch statistics without them)
    ref.eval(), fused.eval()
    with torch.no_grad():
        torch.testing.assert_close(fused(x, {"cell": w}), ref(x, {"cell": w}), atol=ATOL, rtol=RTOL)


# ------------------------------------------------------------------ structure / state
@pytest.mark.parametrize("case", list(CASES))
def test_same_seed_same_state_dict_and_param_count(case: str) -> None:
    _, ref, fused = build_pair(case)
    a, b = ref.state_dict(), fused.state_dict()
    assert list(a) == list(b)  # same keys in the same order
    for k in a:
        assert a[k].shape == b[k].shape and a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    assert count_parameters(fused) == count_parameters(ref)
    has_stats = CASES[case].get("track_running_stats", True)
    assert any(".edges." in k and k.endswith(".op.2.running_mean") for k in a) == has_stats
    # the storage really is fused: no per-edge op modules remain in the cells
    for cell in fused.cells:
        if isinstance(cell, FusedNB201Cell):
            assert not any(isinstance(m, (nn.BatchNorm2d, nn.Conv2d, ReLUConvBN)) for m in cell.modules())


def test_paper_size_parameter_count_unchanged() -> None:
    net = NB201Space({"init_channels": 16}).build_supernet(10, 3, RelaxationSpec(), fused=True)
    assert count_parameters(net) == 1_686_106  # nasbench201.md §3, as test_nb201 checks for the reference


# ------------------------------------------------------------------ math
@pytest.mark.parametrize("merge", [True, False], ids=["merged", "unmerged"])
@pytest.mark.parametrize("case", list(CASES))
def test_forward_loss_gradients_and_running_stats_match(case: str, merge: bool) -> None:
    space, ref, fused = build_pair(case, merge)
    assert all(c.merge_1x1 == merge for c in fused.cells if isinstance(c, FusedNB201Cell))
    assert_same_results(ref, fused, random_arch(len(space.op_names)), images())


@pytest.mark.parametrize("impl", ["native", "function", "function2"])
def test_batchnorm_impls(impl: str) -> None:
    space, ref, fused = build_pair("default")
    n_ref, n_fused = use_batchnorm_impl(ref, impl), use_batchnorm_impl(fused, impl)
    assert n_ref > n_fused > 0  # the fused cells have one stacked BN per source node
    assert_same_results(ref, fused, random_arch(len(space.op_names)), images())


@pytest.mark.parametrize("impl", ["native", "function2"])
def test_batchnorm_impls_without_running_stats(impl: str) -> None:
    space, ref, fused = build_pair("no_running_stats", merge=False)
    use_batchnorm_impl(ref, impl), use_batchnorm_impl(fused, impl)
    assert_same_results(ref, fused, random_arch(len(space.op_names)), images())


def test_none_gets_exactly_zero_gradient() -> None:
    space, ref, fused = build_pair("default")
    w = random_arch(len(space.op_names))
    g, = torch.autograd.grad(fused(images(), {"cell": w}).square().sum(), w)
    g_ref, = torch.autograd.grad(ref(images(), {"cell": w}).square().sum(), w)
    col = space.op_names.index("none")
    assert torch.all(g[:, col] == 0) and torch.all(g_ref[:, col] == 0)
    assert torch.all(g[:, [c for c in range(len(space.op_names)) if c != col]] != 0)


@pytest.mark.parametrize("ops", [
    ["avg_pool_3x3", "nor_conv_1x1"],
    ["nor_conv_3x3"],
    ["skip_connect", "none"],
    ["nor_conv_1x1", "none", "avg_pool_3x3", "nor_conv_3x3", "skip_connect"],
], ids=lambda ops: "+".join(o.split("_")[-1] for o in ops))
@pytest.mark.parametrize("merge", [True, False], ids=["merged", "unmerged"])
def test_cell_any_op_subset_and_order(ops: list[str], merge: bool) -> None:
    """Cell level, arbitrary op lists: output, input gradient, arch and weight gradients."""
    torch.manual_seed(0)
    ref = NB201SearchCell(4, ops, True, False)
    fused = FusedNB201Cell(copy.deepcopy(ref), merge_1x1=merge)
    x = torch.randn(3, 4, 6, 6, generator=torch.Generator().manual_seed(4)).requires_grad_(True)
    w = random_arch(len(ops))
    results = []
    for cell in (ref, fused):
        out = cell(x, w, None)
        params = list(cell.parameters())
        grads = torch.autograd.grad(out.square().sum(), [x, w, *params])
        results.append((out, grads[:2], grads_by_state_name(cell, list(grads[2:])) if params else {}))
    (o1, g1, p1), (o2, g2, p2) = results
    torch.testing.assert_close(o2, o1, atol=ATOL, rtol=RTOL)
    # the loss is an unnormalised sum, so gradients are O(10-100) sums of terms of both signs:
    # the absolute tolerance is taken relative to each gradient's largest entry
    for a, b in zip(g1, g2):
        torch.testing.assert_close(b, a, atol=ATOL * max(1.0, float(a.abs().max())), rtol=RTOL)
    for n, _ in ref.named_parameters():
        torch.testing.assert_close(p2[n], p1[n], atol=ATOL * max(1.0, float(p1[n].abs().max())), rtol=RTOL)
    assert_states_close(ref.state_dict(), fused.state_dict())
    assert_state_round_trips(ref, fused)


def test_only_none_is_refused() -> None:
    with pytest.raises(ConfigError):
        FusedNB201Cell(NB201SearchCell(4, ["none"], True, False))


def test_comparison_catches_layout_mistakes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The equivalence checks above can fail: a swapped destination or a misplaced 1x1 tap is caught."""
    space, ref, fused = build_pair("default")
    w, x = random_arch(len(space.op_names)), images()
    ref.eval(), fused.eval()
    with torch.no_grad():
        want = ref(x, {"cell": w})
        # swap the mixing rows of source 0's first two destinations (edges 1<-0 and 2<-0)
        cells = [c for c in fused.cells if isinstance(c, FusedNB201Cell)]
        good = cells[0]._mix_index.clone()
        m, p = cells[0]._mix_shapes[0]
        bad = good.view(-1)[: m * p].view(m, p)[[1, 0, 2]].reshape(-1)
        for c in cells:
            c._mix_index[: m * p] = bad
        assert not torch.allclose(fused(x, {"cell": w}), want, atol=ATOL, rtol=RTOL)
        for c in cells:
            c._mix_index.copy_(good)
        torch.testing.assert_close(fused(x, {"cell": w}), want, atol=ATOL, rtol=RTOL)
        # the 1x1 weights padded into a corner tap instead of the centre
        pad = F.pad
        monkeypatch.setattr(F, "pad", lambda t, p, *a, **k: pad(t, (0, 2, 0, 2)) if tuple(p) == (1, 1, 1, 1)
                            else pad(t, p, *a, **k))
        assert not torch.allclose(fused(x, {"cell": w}), want, atol=ATOL, rtol=RTOL)


# ------------------------------------------------------------------ state_dict round trips
def test_load_reference_state_dict_round_trip() -> None:
    space, ref, fused = build_pair("default")
    state = perturbed_state(ref, seed=5)
    ref.load_state_dict(state)
    fused.load_state_dict(ref.state_dict())  # reference -> fused
    assert_states_close(fused.state_dict(), state, atol=0)
    torch.manual_seed(99)
    ref2 = space.build_supernet(10, 3, RelaxationSpec())
    ref2.load_state_dict(copy.deepcopy(fused).state_dict())  # fused (a deep copy) -> reference
    assert_states_close(ref2.state_dict(), state, atol=0)
    w, x = random_arch(len(space.op_names)), images()
    ref2.eval(), fused.eval()
    with torch.no_grad():
        torch.testing.assert_close(fused(x, {"cell": w}), ref2(x, {"cell": w}), atol=ATOL, rtol=RTOL)
    partial = dict(ref.state_dict())
    partial.pop(next(k for k in partial if k.endswith(".edges.3.2.op.1.weight")))
    with pytest.raises(RuntimeError):  # strict loading still reports a missing reference key
        fused.load_state_dict(partial)


def test_discrete_supernet_keeps_reference_cells() -> None:
    space = NB201Space(CASES["default"])
    net = space.build_supernet(10, 3, RelaxationSpec(sampling="hard"), fused=True)
    assert not net.fused and not any(isinstance(m, FusedNB201Cell) for m in net.modules())


def test_channels_last_and_bf16_autocast() -> None:
    space, ref, fused = build_pair("default")
    ref = ref.to(memory_format=torch.channels_last)
    fused = fused.to(memory_format=torch.channels_last)
    w = random_arch(len(space.op_names))
    x = images().contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fused(x, {"cell": w}), ref(x, {"cell": w}), atol=ATOL, rtol=RTOL)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = ref(x, {"cell": w}), fused(x, {"cell": w})
    assert b.dtype == a.dtype
    torch.testing.assert_close(b.float(), a.float(), atol=0.1, rtol=0.05)


# ------------------------------------------------------------------ full search
#: method -> (extra overrides, arch tolerance); as tests/test_fused.py: GAEA with a large exp-grad
#: step so the architecture moves well beyond rounding noise; Adam (DARTS) turns rounding-level
#: differences of near-zero gradient entries into up to one lr-sized (3e-4) step
SEARCHES = {"gaea_darts": (["optimizer.lr=5"], 1e-5), "darts": ([], 3e-4)}


@pytest.mark.parametrize("method", list(SEARCHES))
def test_tiny_search_fused_equals_reference(method: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nas_cli.stages.search import run_search

    calls = []
    mix = FusedNB201Cell.mix
    monkeypatch.setattr(FusedNB201Cell, "mix", lambda self, *a: calls.append(1) or mix(self, *a))
    extra, atol = SEARCHES[method]
    results = {}
    for fused in (True, False):
        out = tmp_path / str(fused)
        n0 = len(calls)
        cfg = make_cfg([*NB_TINY, f"method={method}", f"runtime.fused={str(fused).lower()}",
                        "runtime.num_threads=1", *extra])
        summary = run_search(cfg, out)
        assert (len(calls) > n0) == fused  # the fused run really ran fused cells, the reference none
        ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
        results[fused] = (summary["genotype"], ckpt["arch"], ckpt["model"], summary)
    assert_searches_match(results, atol)
