"""runtime.hard_forward: the masked one-hot forward (capturable GDAS) equals the reference one.

The reference ("selected") runs only the sampled op per edge; the masked form runs every op through
the fused NB201 cells with exact zeros for the others, holds back their BN statistics, and lets
FreezeUnselected keep their weights and momentum.  Compared here, on CPU:

* one forward/backward: logits, the gradient of every sample entry and of every weight
  (unselected: exactly zero vs None), BN statistics and batch counters (exactly), after several
  forwards with different samples;
* SGD steps with momentum, nesterov and weight decay: every weight and momentum buffer, by
  state_dict name (unselected ops untouched, exactly);
* whole GDAS searches: the same architecture, genotype and final loss;
* the settings: resolution, the graph blocker's answer, one-line errors.
Gradient tolerances (atol 1e-5, rtol 1e-4) cover summation order only: a dropped rest term or a
wrong row mask changes the results by orders of magnitude more (checked below).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nas_cli.arch.hard_forward import FreezeUnselected, resolve_hard_forward
from nas_cli.arch.sampling import SAMPLINGS
from nas_cli.errors import ConfigError
from nas_cli.runtime.optstate import optimizer_state_by_name
from nas_cli.spaces.base import RelaxationSpec
from nas_cli.spaces.nb201 import NB201SearchCell, NB201Space, NB201Supernet
from nas_cli.spaces.nb201_fused import FusedNB201Cell
from tests.conftest import OpCount, assert_searches_match, make_cfg
from tests.test_fused import grads_by_state_name
from tests.test_fused import one_thread  # noqa: F401  (autouse: one torch thread for these tiny nets)
from tests.test_nb201 import NB_TINY

ATOL, RTOL = 1e-5, 1e-4


def build_pair(cfg: dict | None = None, sampling: str = "hard") -> tuple[NB201Supernet, NB201Supernet]:
    space = NB201Space(cfg or {"init_channels": 4, "cells_per_stage": 2})
    torch.manual_seed(0)
    ref = space.build_supernet(10, 3, RelaxationSpec(sampling=sampling))
    torch.manual_seed(0)
    masked = space.build_supernet(10, 3, RelaxationSpec(sampling=sampling), fused=True, hard_forward="masked")
    assert isinstance(ref.cells[0], NB201SearchCell) and isinstance(masked.cells[0], FusedNB201Cell)
    a, b = ref.state_dict(), masked.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    return ref, masked


def hard_sample(seed: int, n_ops: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits leaf, straight-through one-hot sample of them); the same seed gives the same sample."""
    logits = torch.randn(6, n_ops, generator=torch.Generator().manual_seed(seed)).requires_grad_(True)
    torch.manual_seed(100 + seed)
    return logits, SAMPLINGS.get("hard")(logits.softmax(-1), logits.log_softmax(-1), 2.0, None)


def images(seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g)


def all_grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return grads_by_state_name(model, [p.grad if p.grad is not None else torch.zeros_like(p)
                                       for p in model.parameters()])


def forward_backward(model: NB201Supernet, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    logits, w = hard_sample(seed)
    x, y = images(seed)
    model.zero_grad(set_to_none=True)
    out = model(x, {"cell": w})
    torch.nn.functional.cross_entropy(out, y).backward()
    assert logits.grad is not None
    return out.detach(), logits.grad


@pytest.mark.parametrize("cfg", [
    {"init_channels": 4, "cells_per_stage": 2},
    {"init_channels": 4, "cells_per_stage": 1, "exclude_zero": True},
    {"init_channels": 4, "cells_per_stage": 1, "track_running_stats": False},
], ids=["default", "no_zero", "no_running_stats"])
def test_masked_forward_equals_selected(cfg: dict) -> None:
    ref, masked = build_pair(cfg)
    n_ops = len(ref.op_names)
    for seed in range(4):  # several samples: statistics and counters of different ops move
        logits, w = hard_sample(seed, n_ops)
        logits2, w2 = hard_sample(seed, n_ops)
        assert torch.equal(w, w2)
        x, y = images(seed)
        outs = []
        for model, ww in ((ref, w), (masked, w2)):
            model.zero_grad(set_to_none=True)
            outs.append(model(x, {"cell": ww}))
            torch.nn.functional.cross_entropy(outs[-1], y).backward()
        torch.testing.assert_close(outs[1], outs[0], atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(logits2.grad, logits.grad, atol=ATOL, rtol=RTOL)
        g_ref, g_masked = all_grads(ref), all_grads(masked)
        for k in g_ref:
            torch.testing.assert_close(g_masked[k], g_ref[k], atol=ATOL, rtol=RTOL, msg=k)
        # the reference computes no gradient for unselected ops; the masked form exactly zero
        for name, p in ref.named_parameters():
            if p.grad is None:
                assert float(g_masked[name].abs().max()) == 0.0, name
        a, b = ref.state_dict(), masked.state_dict()
        for k in a:  # batch counters exactly; BN statistics to rounding (1x1 convs run padded to 3x3)
            if k.endswith("num_batches_tracked"):
                assert torch.equal(a[k], b[k]), k
            torch.testing.assert_close(b[k], a[k], atol=1e-6, rtol=1e-5, msg=k)
    assert masked.last_used is not None and masked.last_used.sum() == 6
    x, _ = images()
    ref.eval(), masked.eval()
    _, w = hard_sample(7, n_ops)
    torch.testing.assert_close(masked(x, {"cell": w}), ref(x, {"cell": w}), atol=ATOL, rtol=RTOL)  # eval mode


def test_comparison_catches_a_missing_rest_term(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the nodes' rest terms the sample gradients differ far beyond the tolerance."""
    ref, masked = build_pair()
    _, g_ref = forward_backward(ref, 0)
    mix = FusedNB201Cell.mix
    monkeypatch.setattr(FusedNB201Cell, "mix", lambda self, x, coefs, biases=None, *args:
                        mix(self, x, coefs, None, *args))
    _, g_bad = forward_backward(masked, 0)
    assert float((g_bad - g_ref).abs().max()) > 100 * ATOL


def sgd(model: torch.nn.Module) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)


def test_optimizer_steps_leave_unselected_ops_untouched() -> None:
    ref, masked = build_pair()
    opt_ref, opt_masked = sgd(ref), sgd(masked)
    hook = FreezeUnselected(opt_masked, masked)
    before = {k: v.clone() for k, v in masked.state_dict().items()}
    for seed in range(3):
        for model, opt in ((ref, opt_ref), (masked, opt_masked)):
            forward_backward(model, seed)
            opt.step()
        a, b = ref.state_dict(), masked.state_dict()
        for k in a:
            torch.testing.assert_close(b[k], a[k], atol=ATOL, rtol=RTOL, msg=k)
        ma = optimizer_state_by_name(ref, opt_ref)["momentum_buffer"]
        mb = optimizer_state_by_name(masked, opt_masked)["momentum_buffer"]
        for k in mb:  # never-selected ops: a zero buffer in the masked run, none in the reference
            torch.testing.assert_close(mb[k], ma.get(k, torch.zeros_like(mb[k])), atol=ATOL, rtol=RTOL, msg=k)
    # some op was never selected in 3 samples: its weights are exactly the initial ones
    after = masked.state_dict()
    unchanged = [k for k in after if k.endswith("op.1.weight") and torch.equal(after[k], before[k])]
    assert unchanged
    hook.remove()
    forward_backward(masked, 5)
    opt_masked.step()  # without the hooks weight decay moves every op: the hooks did the holding back
    assert not any(torch.equal(masked.state_dict()[k], before[k]) for k in unchanged)


def test_holding_back_costs_a_fixed_number_of_ops() -> None:
    """The hooks' work is a few multi-tensor ops whatever the number of op parameters (per-parameter
    clones and ``where``s were ~1,000 tiny kernels of the NB201 GDAS step on the GPU)."""
    counts = {}
    for cells in (1, 3):
        _, masked = build_pair({"init_channels": 4, "cells_per_stage": cells})
        opt = sgd(masked)
        hook = FreezeUnselected(opt, masked)
        forward_backward(masked, 0)
        opt.step()  # momentum buffers exist from here on
        forward_backward(masked, 1)
        with OpCount() as c:
            hook._before(opt, (), {})
            hook._after(opt, (), {})
        counts[cells] = (sum(c.ops.values()), len(masked.op_parameter_owners()))
    (ops_small, params_small), (ops_large, params_large) = counts[1], counts[3]
    assert params_large >= 3 * params_small > 0
    assert ops_large == ops_small <= 12, counts  # a mask gather, compare, cast, 1 - keep; 6 foreach ops


def test_masked_forward_holds_back_statistics_in_bulk() -> None:
    """No per-BN clones and ``where``s in a masked training forward (six tiny kernels per BN before:
    about 270 per NB201 forward on the GPU), and the BN-update masks are gathered once per stage,
    however many cells it has."""
    counts = {}
    for cells in (1, 3):
        _, masked = build_pair({"init_channels": 4, "cells_per_stage": cells})
        _, w = hard_sample(0)
        x, _ = images(0)
        with OpCount() as c:
            masked(x, {"cell": w})
        counts[cells] = c.ops
    for cells, ops in counts.items():
        assert ops["aten.where.self"] == 0 and ops["aten.clone.default"] == 0, (cells, ops)
    assert counts[3]["aten.index_select.default"] == counts[1]["aten.index_select.default"]
    assert counts[3]["aten.convolution.default"] > counts[1]["aten.convolution.default"]  # more cells ran
    # nb201_fused.OwnerMasks: all stages' masks in one gather (the other: the arch coefficients), the drop
    # masks in one subtraction; each cell gathering its own (the switch off) took one gather per stage
    # and owner list
    assert counts[1]["aten.index_select.default"] == 2 and counts[1]["aten.rsub.Scalar"] == 1, counts[1]


def test_owner_masks_at_once_are_each_cells_masks(monkeypatch: pytest.MonkeyPatch) -> None:
    """OwnerMasks.fill puts in the memo what each cell's owner_mask would gather for itself (values and
    dtypes, keep and drop, the counters' long masks), and a forward with it or without gives the same
    outputs, statistics and counters, bit for bit."""
    from nas_cli.spaces import nb201_fused

    _, masked = build_pair({"init_channels": 4, "cells_per_stage": 2})
    _, w = hard_sample(0)
    used = torch.nn.functional.one_hot(w.detach().argmax(-1), w.shape[-1]).to(w.dtype)
    cells = [c for c in masked.cells if hasattr(c, "mix")]
    memo: dict = {}
    nb201_fused.OwnerMasks(cells).fill(used, memo)
    checked = 0
    for cell in cells:
        for key, counter in cell.mask_keys():
            for dtype, drop in [(torch.long, False)] if counter else [(torch.float32, False), (torch.float32, True)]:
                got, want = cell.owner_mask(key, used, memo, dtype, drop), cell.owner_mask(key, used, None, dtype, drop)
                assert got.dtype == want.dtype and torch.equal(got, want), (key, dtype, drop)
                checked += 1
    ids = {(cell._owner_ids[key], counter) for cell in cells for key, counter in cell.mask_keys()}
    # 6 cells (a counter, 3 source BNs and 3 sources' two conv weights each); the two cells of a stage
    # share their owner lists
    assert checked == 6 * (1 + 2 * 3 + 2 * 6) and len(ids) <= 3 * 10
    assert len(memo) == sum(1 if c else 2 for _, c in ids)
    x, _ = images(0)
    results = []
    for at_once in (True, False):
        monkeypatch.setattr(nb201_fused, "OWNER_MASKS_AT_ONCE", at_once)
        _, net = build_pair({"init_channels": 4, "cells_per_stage": 2})
        with OpCount() as c:
            out = net(x, {"cell": w})
        results.append((out, net.state_dict(), c.ops["aten.index_select.default"]))
    (out_a, sd_a, gathers_a), (out_b, sd_b, gathers_b) = results
    assert torch.equal(out_a, out_b) and all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    assert gathers_a == 2 < gathers_b, (gathers_a, gathers_b)


@pytest.mark.parametrize("cfg", [{}, {"track_running_stats": False}], ids=["default", "no_running_stats"])
def test_selected_conv_forward_equals_the_full_masked_forward(cfg: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """nb201_fused.SELECT_CONVS: a masked training forward runs each edge's selected conv op only (half the
    merged conv's output channels) and gives the full masked form's outputs, every gradient, BN running
    statistics and counters; eval mode and the mixture keep the full form."""
    from nas_cli.spaces import nb201_fused

    runs = []
    for on in (True, False):
        monkeypatch.setattr(nb201_fused, "SELECT_CONVS", on)
        _, net = build_pair({"init_channels": 4, "cells_per_stage": 2, **cfg})
        widths: list[float] = []  # conv output channels per 3x3 weight row (1: one conv per edge, 2: both)
        for m in net.modules():
            if type(m).__name__ == "_SharedInputConvs":
                m.register_forward_hook(lambda mod, _a, y: widths.append(y.shape[1] / mod.weight3.shape[0]))
        outs, grads = [], []
        for seed in range(3):
            out, logit_grad = forward_backward(net, seed)
            outs.append(out)
            grads.append((logit_grad, all_grads(net)))
        train_widths = set(widths)
        widths.clear()
        net.eval()
        x, _ = images()
        _, w = hard_sample(5)
        with torch.no_grad():
            outs.append(net(x, {"cell": w}))
        runs.append((outs, grads, net.state_dict(), train_widths, set(widths)))
    (outs_a, grads_a, sd_a, train_a, eval_a), (outs_b, grads_b, sd_b, train_b, eval_b) = runs
    assert train_a == {1.0} and train_b == {2.0} and eval_a == eval_b == {2.0}
    for a, b in zip(outs_a, outs_b):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    for (la, ga), (lb, gb) in zip(grads_a, grads_b):
        torch.testing.assert_close(la, lb, atol=1e-6, rtol=1e-5)
        for k in ga:
            torch.testing.assert_close(ga[k], gb[k], atol=1e-6, rtol=1e-5, msg=k)
            assert torch.equal(ga[k] == 0, gb[k] == 0), k  # the same exact zeros
    for k in sd_a:
        torch.testing.assert_close(sd_a[k], sd_b[k], atol=1e-6, rtol=1e-5, msg=k)
        if k.endswith("num_batches_tracked"):
            assert torch.equal(sd_a[k], sd_b[k]), k


def test_selected_conv_forward_is_refused_where_the_bns_cannot_take_it() -> None:
    """Affine or synchronised BNs keep the full masked form; the mixing matrices of the selected form put
    each edge's two conv entries in one row."""
    from nas_cli.spaces.nb201_fused import selected_mixture_index

    _, net = build_pair()
    cells = [c for c in net.cells if hasattr(c, "mix")]
    assert all(c.can_select() for c in cells)
    cells[0].fused.parts[1].bn.sync = True
    assert not cells[0].can_select()
    cells[0].fused.parts[1].bn.sync = False
    cells[0].merge_1x1 = False
    assert not cells[0].can_select()
    first, second, shapes = selected_mixture_index(["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3",
                                                    "avg_pool_3x3"])
    # source 0 (edges 0, 1, 3 to nodes 1, 2, 3): rows of [conv of edge 0, 1, 3, skip, pool]
    assert shapes == [(3, 5), (2, 4), (1, 3)]
    zero = 6 * 5
    assert first[:5] == [0 * 5 + 3, zero, zero, 0 * 5 + 1, 0 * 5 + 4]
    assert second[:5] == [0 * 5 + 2, zero, zero, zero, zero]


def test_bn_over_part_of_its_channels_needs_a_masked_training_forward() -> None:
    """_BN.forward(repeat=2) (the selected-conv forward's BN): a one-line error in eval mode, for affine or
    synchronised BNs and without the masked forward's StatsUpdate; both blocks of the held-back copies
    take the batch statistics, and without running statistics it is a plain batch-statistics BN."""
    from nas_cli.spaces.darts_fused import _BN, HeldBackStats, StatsUpdate

    x = torch.randn(4, 3, 5, 5)
    bn = _BN([torch.nn.BatchNorm2d(3, affine=False) for _ in range(2)])  # 6 channels: two blocks of 3
    held = HeldBackStats([bn])
    keep = torch.tensor([1.0, 1, 1, 0, 0, 0])
    y = bn(x, StatsUpdate(held, keep, 1 - keep), repeat=2)
    ref_m, ref_v = torch.zeros(3), torch.ones(3)
    torch.testing.assert_close(y, torch.nn.functional.batch_norm(x, ref_m, ref_v, training=True, momentum=0.1))
    torch.testing.assert_close(held.copies[0], ref_m.repeat(2))
    torch.testing.assert_close(held.copies[1], ref_v.repeat(2))
    held.commit()  # the kept block takes the update, the other keeps its values
    torch.testing.assert_close(bn.running_mean, torch.cat([ref_m, torch.zeros(3)]))
    with pytest.raises(ValueError, match="StatsUpdate"):
        bn(x, None, repeat=2)
    bn.eval()
    with pytest.raises(ValueError, match="training mode"):
        bn(x, StatsUpdate(held, keep, 1 - keep), repeat=2)
    affine = _BN([torch.nn.BatchNorm2d(3) for _ in range(2)])
    with pytest.raises(ValueError, match="non-affine"):
        affine(x, None, repeat=2)
    free = _BN([torch.nn.BatchNorm2d(3, affine=False, track_running_stats=False) for _ in range(2)])
    torch.testing.assert_close(free(x, None, repeat=2), torch.nn.functional.batch_norm(x, None, None, training=True))


def test_uniform_sampling_runs_masked() -> None:
    ref, masked = build_pair(sampling="uniform")
    x, _ = images()
    torch.manual_seed(3)
    w = SAMPLINGS.get("uniform")(torch.full((6, 5), 0.2), torch.zeros(6, 5), 1.0, None)
    torch.testing.assert_close(masked(x, {"cell": w}), ref(x, {"cell": w}), atol=ATOL, rtol=RTOL)


def test_masked_needs_fused_cells() -> None:
    with pytest.raises(ConfigError, match="runtime.fused"):
        NB201Space({"init_channels": 4}).build_supernet(10, 3, RelaxationSpec(sampling="hard"), hard_forward="masked")


# ------------------------------------------------------------------ settings
GDAS = [*NB_TINY, "method=gdas"]


def test_resolution_and_graph_blocker() -> None:
    from nas_cli.stages.stepper import graph_blocker

    cuda = torch.device("cuda")
    cfg = make_cfg(GDAS)
    assert graph_blocker(cfg, cuda) is None  # auto: capturable through the masked form
    assert resolve_hard_forward(cfg, graphs=True) == "masked"
    assert resolve_hard_forward(cfg, graphs=False) == "selected"
    assert resolve_hard_forward(make_cfg([*NB_TINY, "method=gaea_darts"]), graphs=True) is None  # mixture
    for extra, why in ((["runtime.hard_forward=selected"], "hard_forward=selected"),
                       (["runtime.fused=false"], "fused"),
                       (["search_space=darts"], "darts space")):
        reason = graph_blocker(make_cfg([*GDAS, *extra]), cuda)
        assert reason is not None and why in reason, reason
        assert resolve_hard_forward(make_cfg([*GDAS, *extra]), graphs=False) == "selected"
    assert resolve_hard_forward(make_cfg([*GDAS, "runtime.hard_forward=masked"]), graphs=False) == "masked"


@pytest.mark.parametrize("extra, match", [
    (["search_space=darts"], "darts space"),
    (["runtime.fused=false"], "runtime.fused"),
    (["objective=bilevel_unrolled"], "objective 'bilevel_unrolled'"),
])
def test_masked_errors_are_one_line(extra: list[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as e:
        resolve_hard_forward(make_cfg([*GDAS, "runtime.hard_forward=masked", *extra]), graphs=False)
    assert "\n" not in str(e.value)


def test_bad_value_is_rejected() -> None:
    from nas_cli.config import validate

    with pytest.raises(ConfigError, match="runtime.hard_forward"):
        validate(make_cfg([*GDAS, "runtime.hard_forward=all"]))


def test_tau_reaches_the_sampler_as_a_device_tensor() -> None:
    from nas_cli.arch import ArchParameters
    from nas_cli.spaces.base import ArchTensorSpec

    arch = ArchParameters([ArchTensorSpec("cell", (6, 5), "ops")], "logits", "hard")
    arch.tau = 0.25
    assert arch.tau == 0.25 and float(arch.tau_tensor) == 0.25
    assert "tau_tensor" not in arch.state_dict()


# ------------------------------------------------------------------ whole searches
@pytest.mark.parametrize("method", ["gdas", "gaea_gdas"])
def test_tiny_search_masked_equals_selected(method: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nas_cli.stages.search import run_search

    calls = []
    mix = FusedNB201Cell.mix
    monkeypatch.setattr(FusedNB201Cell, "mix", lambda self, *a: calls.append(1) or mix(self, *a))
    results = {}
    for masked in (True, False):
        out = tmp_path / str(masked)
        n0 = len(calls)
        cfg = make_cfg([*NB_TINY, f"method={method}", "runtime.num_threads=1",
                        f"runtime.hard_forward={'masked' if masked else 'selected'}"])
        summary = run_search(cfg, out)
        assert (len(calls) > n0) == masked
        # summary.json records what the settings resolved to
        assert summary["execution"] == {"cuda_graphs": False, "fused_cells": masked, "channels_last": False,
                                        "batchnorm": "native",
                                        "depthwise": "native", "pointwise": "native", "mixing": "native",
                                        "hard_forward": "masked" if masked else "selected"}
        ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
        results[masked] = (summary["genotype"], ckpt["arch"], ckpt["model"], summary)
    assert_searches_match(results, 1e-5)
    (_, _, m1, _), (_, _, m2, _) = results[True], results[False]
    for k in m1:
        torch.testing.assert_close(m1[k].float(), m2[k].float(), atol=1e-4, rtol=1e-3, msg=k)


@pytest.mark.parametrize("first, then", [("masked", "selected"), ("selected", "masked")])
def test_resume_with_the_other_hard_forward(first: str, then: str, tmp_path: Path) -> None:
    """A GDAS search stopped after epoch 1 resumes with the other layout (fused masked cells vs
    per-edge reference cells) and ends where the uninterrupted run ends: the momentum is re-laid
    out through the state_dict names (a positional load would not fit the other layout)."""
    import numpy as np

    from nas_cli.stages.search import run_search

    common = [*NB_TINY, "method=gdas", "runtime.num_threads=1", "search.epochs=3"]
    full = run_search(make_cfg([*common, f"runtime.hard_forward={first}"]), tmp_path / "full")
    part = run_search(make_cfg([*common, f"runtime.hard_forward={first}", "search.stop_after=1"]), tmp_path / "r")
    assert part["status"] == "partial"
    assert torch.load(tmp_path / "r/checkpoint.pt", weights_only=True)["fused"] == (first == "masked")
    resumed = run_search(make_cfg([*common, f"runtime.hard_forward={then}"]), tmp_path / "r")
    assert resumed["status"] == "complete" and resumed["genotype"] == full["genotype"]
    assert abs(resumed["final"]["train_loss"] - full["final"]["train_loss"]) < 1e-3
    a, b = np.load(tmp_path / "full/arch_history.npz"), np.load(tmp_path / "r/arch_history.npz")
    for k in a.files:
        np.testing.assert_allclose(b[k], a[k], atol=1e-5, rtol=1e-3)


def test_old_one_hot_checkpoint_counts_as_reference_layout(tmp_path: Path) -> None:
    """Checkpoints from before runtime.hard_forward recorded runtime.fused (true) for one-hot runs,
    whose supernets had per-edge cells: resuming them masked re-lays the momentum out by name."""
    from nas_cli.stages.search import run_search

    common = [*NB_TINY, "method=gdas", "runtime.num_threads=1", "search.epochs=2"]
    run_search(make_cfg([*common, "runtime.hard_forward=selected", "search.stop_after=1"]), tmp_path / "r")
    path = tmp_path / "r/checkpoint.pt"
    ckpt = torch.load(path, weights_only=False)
    ckpt["fused"] = True  # what the old code wrote
    del ckpt["hard_forward"]
    torch.save(ckpt, path)
    resumed = run_search(make_cfg([*common, "runtime.hard_forward=masked"]), tmp_path / "r")
    assert resumed["status"] == "complete"


# ------------------------------------------------------------------ CUDA graphs (GPU only)
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
GPU_TINY = [*NB_TINY, "runtime.device=cuda", "runtime.deterministic=true", "runtime.batchnorm=native"]


def _gdas_steps(run, n: int, tau_after: dict[int, float] | None = None) -> list[float]:
    from nas_cli.objectives import Batch
    from nas_cli.stages.stepper import build_search_stepper

    stepper = build_search_stepper(run)
    run.model.train()
    losses = []
    batches = run.train_stream.forever()
    for i in range(n):
        if tau_after and i in tau_after:
            run.arch.tau = tau_after[i]
        x, y = next(batches)
        losses.append(float(stepper(Batch(x, y), lambda: Batch(*run.arch_stream.sample()), True).loss))
    return losses


@gpu
@pytest.mark.parametrize("method", ["gdas", "gaea_gdas"])
def test_graph_replayed_masked_steps_match_eager_selected(method: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight GDAS steps (2 eager warm-up, capture, replays) with the masked forward track the eager
    reference (selected ops only, per-edge cells): same losses and architecture movement.  The
    Gumbel draws come from the CUDA generator in both (graph replays advance its offset as eager
    calls do).  TF32 off: the two layouts run differently shaped convs (a merged 3x3+1x1 conv vs
    one per edge), whose TF32 roundings differ by ~1e-3."""
    from nas_cli.stages.search import build_run
    from nas_cli.stages.stepper import CudaGraphStepper, EagerStepper, build_search_stepper

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)

    results = {}
    for mode in ("graph", "eager"):
        extra = ["runtime.cuda_graphs=true"] if mode == "graph" else ["runtime.cuda_graphs=false",
                                                                      "runtime.hard_forward=selected"]
        run = build_run(make_cfg([*GPU_TINY, f"method={method}", *extra]), tmp_path / mode)
        assert run.hard_forward == ("masked" if mode == "graph" else "selected")
        assert isinstance(build_search_stepper(run), CudaGraphStepper if mode == "graph" else EagerStepper)
        initial = {k: v.detach().cpu().clone() for k, v in run.arch.raw.items()}
        losses = _gdas_steps(run, 8)
        results[mode] = (torch.tensor(losses), {k: v.detach().cpu() - initial[k] for k, v in run.arch.raw.items()})
    (lg, dg), (le, de) = results["graph"], results["eager"]
    torch.testing.assert_close(lg[:3], le[:3], rtol=1e-4, atol=1e-4, msg=lambda m: f"{m}\n{lg}\n{le}")
    torch.testing.assert_close(lg, le, rtol=3e-3, atol=3e-3, msg=lambda m: f"{m}\n{lg}\n{le}")
    for k in de:
        assert de[k].abs().max() > 0
        cos = torch.nn.functional.cosine_similarity(dg[k].flatten(), de[k].flatten(), dim=0)
        assert cos > 0.9, (k, float(cos), dg[k], de[k])


@gpu
def test_graph_replayed_selected_convs_match_the_full_masked_form(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """nb201_fused.SELECT_CONVS on the GPU with the product's kernels (Triton BN, mixing, select kernels,
    the NHWC route) and graph replays: six GDAS steps give the full masked form's losses, weights and BN
    running statistics (fp32 convs, so the two conv widths round alike)."""
    from nas_cli.spaces import nb201_fused
    from nas_cli.stages.search import build_run
    from nas_cli.stages.stepper import CudaGraphStepper, build_search_stepper

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    results = {}
    for on in (True, False):  # the run's switch (runtime.kernel_switches) sets the module constant
        run = build_run(make_cfg([*NB_TINY, "runtime.device=cuda", "runtime.deterministic=true", "method=gdas",
                                  "runtime.cuda_graphs=true", f"+runtime.kernel_switches.select_convs={on}"]),
                        tmp_path / str(on))
        assert nb201_fused.SELECT_CONVS is on and run.model._select_convs is on
        assert run.hard_forward == "masked" and isinstance(build_search_stepper(run), CudaGraphStepper)
        losses = _gdas_steps(run, 6)
        results[on] = (torch.tensor(losses), {k: v.detach().cpu().clone() for k, v in run.model.state_dict().items()})
    (l_on, sd_on), (l_off, sd_off) = results[True], results[False]
    torch.testing.assert_close(l_on, l_off, rtol=1e-4, atol=1e-5)
    for k, v in sd_off.items():
        torch.testing.assert_close(sd_on[k], v, rtol=1e-3, atol=1e-4, msg=k)


@gpu
def test_graph_replay_reads_the_current_tau(tmp_path: Path) -> None:
    """The temperature lives in a device tensor: changing it after the capture changes the replayed
    steps (a Python float would have been baked into the graph).  Two identical runs agree exactly,
    so the difference is the temperature's."""
    from nas_cli.stages.search import build_run

    finals = {}
    for name, taus in (("a", None), ("b", None), ("hot", {4: 50.0})):
        run = build_run(make_cfg([*GPU_TINY, "method=gdas", "runtime.cuda_graphs=true"]), tmp_path / name)
        _gdas_steps(run, 7, taus)
        finals[name] = torch.cat([v.detach().cpu().flatten() for v in run.arch.raw.values()])
    assert torch.equal(finals["a"], finals["b"])
    assert not torch.equal(finals["a"], finals["hot"])


@pytest.mark.parametrize("impl", ["function", "function2"])
def test_masked_statistics_with_the_graph_bn_kernels(impl: str) -> None:
    """Graph-replayed steps use runtime.batchnorm=function2 (auto): the masked running-statistics
    update works through every BN kernel (they update the copies _BN hands them)."""
    from nas_cli.spaces.batchnorm import use_batchnorm_impl

    ref, masked = build_pair()
    use_batchnorm_impl(masked, impl)
    for seed in range(3):
        forward_backward(ref, seed)
        forward_backward(masked, seed)
    a, b = ref.state_dict(), masked.state_dict()
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-6, rtol=1e-5, msg=k)
