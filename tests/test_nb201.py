"""NAS-Bench-201: arch strings, networks, GDAS hard forward, tau, exclude_zero, oracle, splits,
ImageNet16-120, searches with every NB201 method, reports, and the demo preset on nb201."""

from __future__ import annotations

import json
import math
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nas_cli.errors import ConfigError, DataError
from nas_cli.runtime.io import read_jsonl
from tests.conftest import ROOT, make_cfg

from nas_cli.spaces.base import RelaxationSpec, count_parameters
from nas_cli.spaces.nb201 import (NB201_OPS, NUM_ARCHS, NB201Network, NB201Space, all_arch_strings, arch_to_str,
                                  count_params, describe_nb201, str_to_arch)

RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
SPEC = json.loads((ROOT.parent / "shared/spec/genotypes.json").read_text()) \
    if (ROOT.parent / "shared/spec/genotypes.json").is_file() else None
METHODS = ["darts", "gaea_darts", "gdas", "gaea_gdas", "rsws"]
NB_TINY = ["experiment=demo", "search_space=nb201", "dataset.num_train=160", "dataset.num_test=64",
           "dataset.image_size=8", "search_space.init_channels=4", "search.epochs=2", "search.batch_size=32",
           "search.log_every=1000", "runtime.device=cpu", "method.selector.candidates=4",
           "method.selector.batch_size=32", "objective.warmup_epochs=0"]


# ------------------------------------------------------------------ codec / networks
def test_arch_string_codec_round_trips_all_15625_uniquely() -> None:
    strings = list(all_arch_strings())
    assert len(strings) == NUM_ARCHS == 15625 and len(set(strings)) == 15625
    for s in strings:
        assert arch_to_str(str_to_arch(s)) == s
    assert str_to_arch(RESNET) == ("nor_conv_3x3", "none", "nor_conv_3x3", "skip_connect", "none", "skip_connect")
    for bad in ("|nor_conv_3x3~0|", "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",
                "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|"):
        with pytest.raises(ConfigError):
            str_to_arch(bad)


def test_supernet_and_benchmark_network_parameter_counts() -> None:
    # supernet counts: nasbench201.md §3 (analytic)
    for C, classes, expected in ((16, 10, 1_686_106), (16, 100, 1_691_956), (16, 120, 1_693_256),
                                 (24, 10, 3_792_514)):
        net = NB201Space({"init_channels": C}).build_supernet(classes, 3, RelaxationSpec())
        assert count_parameters(net) == expected
    # benchmark networks: all-skip / all-conv3x3 = the NB201 table's smallest / largest CIFAR-10 models
    # (0.073306 / 1.531546 MB, from the benchmark's published range -- not in the spec files)
    assert count_params(NB201Network(arch_to_str(["skip_connect"] * 6), 10)) == 73_306
    assert count_params(NB201Network(arch_to_str(["nor_conv_3x3"] * 6), 10)) == 1_531_546
    assert [count_params(NB201Network(RESNET, k)) for k in (10, 100, 120)] == [559_386, 565_236, 566_536]
    if SPEC is not None:
        for name, s in SPEC["nb201_arch_strings"].items():
            if not name.startswith("_"):
                assert arch_to_str(str_to_arch(s)) == s
    net = NB201Network(RESNET, 10)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_describe_and_cli_print_class_counts() -> None:
    from rich.console import Console

    con = Console(record=True, width=120)
    con.print(describe_nb201(RESNET))
    text = con.export_text()
    assert "559,386" in text and "565,236" in text and "566,536" in text and "imagenet16_120" in text
    proc = subprocess.run([sys.executable, "-c", "import sys; from nas_cli.spaces.nb201 import main; sys.exit(main())", "|bad~0|"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "error" in proc.stderr and "Traceback" not in proc.stderr


# ------------------------------------------------------------------ GDAS hard sampling
@pytest.mark.parametrize("param", ["logits", "simplex"])
def test_hard_sample_is_one_hot_with_gradient_to_arch_params(param: str) -> None:
    from nas_cli.arch import ArchParameters

    torch.manual_seed(0)  # the Gumbel draw and the input use the global generator: same result in any test order
    space = NB201Space({"init_channels": 4, "cells_per_stage": 1})
    relax = RelaxationSpec(sampling="hard")
    arch = ArchParameters(space.arch_specs(relax), param, "hard", seed=0)
    arch.tau = 5.0
    w = arch.weights()["cell"]
    assert torch.equal(w.detach().sum(-1), torch.ones(6)) and set(w.detach().unique().tolist()) <= {0.0, 1.0}
    net = space.build_supernet(10, 3, relax)
    calls = []
    for e, edge in enumerate(net.cells[0].edges):
        for o, op in enumerate(edge):
            op.register_forward_hook(lambda m, i, out, e=e, o=o: calls.append((e, o)))
    loss = net(torch.randn(4, 3, 8, 8), {"cell": w}).logsumexp(1).mean()
    grad, = torch.autograd.grad(loss, [arch.raw["cell"]])
    chosen = w.detach().argmax(-1).tolist()
    assert sorted(calls) == [(e, k) for e, k in enumerate(chosen)]  # only the sampled op of each edge ran
    assert (grad.abs() > 0).float().mean() > 0.5 and torch.isfinite(grad).all()  # gradient reaches (nearly) all of p


def test_tau_schedules_endpoints() -> None:
    from nas_cli.stages.common import linear_tau

    E = 150
    assert linear_tau(0, E, 10, 0.1) == 10 and math.isclose(linear_tau(E - 1, E, 10, 0.1), 0.1)
    # paper with warmup: tau_max until W, tau_min at the last epoch
    assert linear_tau(49, E, 10, 0.1, 50) == 10 and math.isclose(linear_tau(E - 1, E, 10, 0.1, 50), 0.1)
    # official [G]: divides by E-1, ends at ~3.42 for E=150, W=50
    assert linear_tau(50, E, 10, 0.1, 50, "official") == 10
    assert math.isclose(linear_tau(E - 1, E, 10, 0.1, 50, "official"), 10 - 9.9 * 99 / 149)
    assert math.isclose(linear_tau(E - 1, E, 10, 0.1, 0, "official"), 0.1)


def test_exclude_zero_removes_none_everywhere() -> None:
    from nas_cli.spaces.nb201 import Zero

    space = NB201Space({"exclude_zero": True, "init_channels": 4, "cells_per_stage": 1})
    assert space.op_names == list(NB201_OPS[1:])
    assert space.arch_specs(RelaxationSpec())[0].shape == (6, 4)
    for sampling in ("mixture", "hard"):
        net = space.build_supernet(10, 3, RelaxationSpec(sampling=sampling))
        assert not any(isinstance(m, Zero) for m in net.modules())
    w = torch.zeros(6, 4)
    assert "none" not in space.discretize({"cell": w})
    with pytest.raises(ConfigError):
        space.one_hot(RESNET)
    assert "none" in NB201Space({}).discretize({"cell": torch.zeros(6, 5)})  # ties -> first max


# ------------------------------------------------------------------ oracle
def _fixture_table() -> dict[str, dict[str, float]]:
    table = {}
    for s in all_arch_strings():
        ops = str_to_arch(s)
        score = sum({"none": 0, "skip_connect": 1, "avg_pool_3x3": 1, "nor_conv_1x1": 2, "nor_conv_3x3": 3}[o]
                    for o in ops)
        table[s] = {"cifar10": 50 + 2.5 * score, "cifar100": 20 + 2.5 * score, "imagenet16_120": 10 + score}
    return table


def _official_fixture(path: Path, archs: list[str]) -> None:
    """A tiny benchmark file in the on-disk layout of NAS-Bench-201-v1_x.pth (read without the API)."""
    def results(acc: float, seed: int) -> dict:
        return {"name": "x", "epochs": 200, "seed": seed, "net_state_dict": None,
                "eval_acc1es": {"ori-test@199": acc, "x-valid@199": acc - 1, "x-test@199": acc - 2}}

    infos = {}
    for i, a in enumerate(archs):
        all_results = {}
        for ds, base in (("cifar10-valid", 1.0), ("cifar10", 90.0), ("cifar100", 70.0), ("ImageNet16-120", 40.0)):
            for seed in (777, 888):
                all_results[(ds, seed)] = results(base + i + (seed == 888), seed)
        full = {"arch_index": i, "arch_str": a, "all_results": all_results,
                "dataset_seed": {}, "clear_net_done": True}
        infos[i] = {"less": full, "full": full}
    torch.save({"meta_archs": archs, "arch2infos": infos, "evaluated_indexes": list(range(len(archs)))}, path)


def test_oracle_reads_official_layout_and_compact_tables(tmp_path: Path) -> None:
    from nas_cli.oracle.nb201 import export_table, load_nb201_oracle

    archs = [RESNET, arch_to_str(["nor_conv_3x3"] * 6)]
    _official_fixture(tmp_path / "bench.pth", archs)
    o = load_nb201_oracle(tmp_path / "bench.pth", use_api=False)
    assert o.test_acc(RESNET, "cifar10") == pytest.approx(90.5)        # ori-test, mean over 2 seeds
    assert o.test_acc(RESNET, "cifar100") == pytest.approx(68.5)       # x-test
    assert o.test_acc(archs[1], "imagenet16_120") == pytest.approx(39.5)
    assert o.best("cifar10") == pytest.approx(91.5)
    assert o.test_acc(arch_to_str(["none"] * 6), "cifar10") is None
    for suffix in ("csv", "json"):
        export_table(o.table, tmp_path / f"t.{suffix}")
        o2 = load_nb201_oracle(tmp_path / f"t.{suffix}")
        assert o2.table == o.table
    with pytest.raises(DataError):
        load_nb201_oracle(tmp_path / "missing.csv")


# ------------------------------------------------------------------ searches
@pytest.fixture(scope="module")
def oracle_table(tmp_path_factory) -> Path:
    from nas_cli.oracle.nb201 import export_table

    return export_table(_fixture_table(), tmp_path_factory.mktemp("oracle") / "nb201.csv")


@pytest.fixture(scope="module")
def nb201_runs(oracle_table: Path, tmp_path_factory) -> dict[str, Path]:
    from nas_cli.stages.search import run_search

    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("runs")
    out = {}
    for m in METHODS:
        out[m] = base / m
        run_search(make_cfg([*NB_TINY, f"method={m}", "oracle=nb201", f"oracle.path={oracle_table}"]), out[m])
    return out


@pytest.mark.parametrize("method", METHODS)
def test_search_every_nb201_method_logs_oracle_curves(method: str, nb201_runs: dict[str, Path]) -> None:
    d = nb201_runs[method]
    rows = read_jsonl(d / "metrics.jsonl")
    table = _fixture_table()
    best = max(r["cifar10"] for r in table.values())
    assert len(rows) == 2
    for r in rows:
        geno = r["genotype"]["arch_str"]
        assert r["oracle_test_acc"] == pytest.approx(table[geno]["cifar10"])
        assert r["oracle_regret"] == pytest.approx(best - r["oracle_test_acc"])
    s = json.loads((d / "summary.json").read_text())
    assert s["oracle"]["test_acc"]["cifar100"] == pytest.approx(table[s["genotype_str"]]["cifar100"])
    hist = np.load(d / "arch_history.npz")
    if method in ("gdas", "gaea_gdas", "gaea_darts", "darts"):
        assert np.abs(hist["cell"][-1] - hist["initial_cell"]).max() > 0  # arch parameters were updated
        assert rows[-1]["arch_updates"] is True
    if method == "rsws":
        np.testing.assert_array_equal(hist["cell"][-1], hist["initial_cell"])  # no architecture steps
        assert rows[-1]["arch_updates"] is False
    if method in ("gdas", "gaea_gdas"):
        assert rows[0]["tau"] == 10.0 and rows[-1]["tau"] == pytest.approx(0.1)


def test_nb201_report_table_and_plot(nb201_runs: dict[str, Path], tmp_path: Path) -> None:
    from nas_cli.report.nb201 import main, plot_oracle_curves, table2_rows

    rows = table2_rows(nb201_runs.values())
    assert sorted(r["method"] for r in rows) == sorted(METHODS)
    assert all(r["cifar10_mean"] is not None and r["cifar10_std"] == 0 for r in rows)
    for suffix in ("png", "svg"):
        p = plot_oracle_curves(nb201_runs.values(), tmp_path / f"c.{suffix}")
        assert p.stat().st_size > 1000
    assert main([str(v) for v in nb201_runs.values()]) == 0


def test_no_oracle_says_so_once(tmp_path: Path, capsys) -> None:
    from nas_cli.stages.search import run_search

    torch.set_num_threads(1)
    run_search(make_cfg([*NB_TINY, "method=gaea_darts", "search.epochs=1"]), tmp_path)
    out = capsys.readouterr().out
    assert out.count("no oracle configured") == 1
    assert "oracle_test_acc" not in read_jsonl(tmp_path / "metrics.jsonl")[0]


@pytest.mark.parametrize("method", METHODS)
def test_cli_demo_preset_on_nb201(method: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "nas_cli", "experiment=demo", "search_space=nb201", f"method={method}",
         f"hydra.run.dir={tmp_path}", "search.epochs=1", "runtime.device=cpu", "runtime.num_threads=1",
         "dataset.num_train=256", "dataset.num_test=128",  # a quarter of the demo data (make demo: all)
         *(["method.selector.candidates=10"] if method == "rsws" else [])],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["search_space"] == "nb201" and arch_to_str(str_to_arch(s["genotype_str"])) == s["genotype_str"]


def test_demo_preset_keeps_darts_sizes_and_picks_nb201_sizes() -> None:
    c = make_cfg(["experiment=demo"])
    assert (c.search_space.init_channels, c.search_space.layers) == (8, 5)
    c = make_cfg(["experiment=demo", "search_space=nb201"])
    assert (c.search_space.init_channels, c.search_space.cells_per_stage) == (8, 1)
    c = make_cfg([])
    assert (c.search_space.init_channels, c.search_space.layers) == (16, 8)


def test_paper_presets_compose() -> None:
    expected = {"nb201_gaea_darts_erm": ("gaea_darts", "single_level", 25, True),
                "nb201_gaea_darts_bilevel": ("gaea_darts", "bilevel", 25, True),
                "nb201_darts_bilevel": ("darts", "bilevel", 50, False),
                "nb201_gdas": ("gdas", "bilevel", 250, False),
                "nb201_gaea_gdas": ("gaea_gdas", "bilevel", 150, False),
                "nb201_rsws": ("rsws", "bilevel", 250, False)}
    for name, (method, objective, epochs, ez) in expected.items():
        c = make_cfg([f"experiment=paper/{name}"])
        assert (c.method.name, c.objective.name, c.search.epochs, c.search_space.exclude_zero) == \
            (method, objective, epochs, ez), name
        assert c.search_space.name == "nb201" and c.dataset.split == "nb201"
        assert c.search_space.init_channels == 16 and c.search_space.cells_per_stage == 5


# ------------------------------------------------------------------ data
def _write_imagenet16(root: Path, n: int = 40) -> None:
    d = root / "ImageNet16"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"train_data_batch_{i}" for i in range(1, 11)] + ["val_data"]:
        labels = rng.integers(1, 1001, n).tolist()
        labels[:3] = [1, 120, 121]
        data = rng.integers(0, 256, (n, 768), dtype=np.uint8)  # 3x16x16 planar (the spec's "3072" is 32x32)
        with open(d / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f)


def test_imagenet16_loader_on_fixture(tmp_path: Path) -> None:
    from nas_cli.data import load_dataset

    _write_imagenet16(tmp_path)
    ds = load_dataset({"name": "imagenet16_120", "root": str(tmp_path)})
    assert ds.num_classes == 120 and ds.image_shape == (3, 16, 16) and ds.crop_padding == 2
    assert int(ds.train_y.min()) == 0 and int(ds.train_y.max()) <= 119
    with open(tmp_path / "ImageNet16/val_data", "rb") as f:
        raw = pickle.load(f)
    keep = [i for i, l in enumerate(raw["labels"]) if 1 <= l <= 120]
    assert ds.num_test == len(keep) and int(ds.test_y[1]) == 119  # label 120 -> 119; 121 dropped
    np.testing.assert_array_equal(ds.test_x[0].numpy(), raw["data"][keep[0]].reshape(3, 16, 16))
    kept = 0
    for i in range(1, 11):
        with open(tmp_path / f"ImageNet16/train_data_batch_{i}", "rb") as f:
            kept += sum(1 <= l <= 120 for l in pickle.load(f)["labels"])
    assert ds.num_train == kept  # all 10 training batches, labels outside 1..120 dropped
    assert ds.mean[0] == pytest.approx(122.68 / 255)
    with pytest.raises(DataError, match="not found"):
        load_dataset({"name": "imagenet16_120", "root": str(tmp_path / "nope")})


def test_nb201_split_rules_and_split_file(tmp_path: Path) -> None:
    from nas_cli.data.base import ArrayDataset
    from nas_cli.data.splits import make_search_split

    def ds(name: str) -> ArrayDataset:
        y = torch.arange(200) % 10
        x = torch.zeros(200, 3, 4, 4, dtype=torch.uint8)
        return ArrayDataset(name, x, y, x[:100], y[:100], 10, (0.5,) * 3, (0.25,) * 3)

    s = make_search_split(ds("cifar10"), {"split": "nb201"}, 0.5)
    assert not s.uses_test and len(s.weights) == len(s.arch) == 100
    assert set(s.weights.tolist()).isdisjoint(s.arch.tolist())
    assert torch.bincount(ds("cifar10").train_y[s.arch]).tolist() == [10] * 10  # class-stratified
    s2 = make_search_split(ds("cifar100"), {"split": "nb201"}, 0.5)
    assert s2.uses_test and len(s2.weights) == 200 and len(s2.arch) == 50 and int(s2.arch.min()) >= 200
    assert torch.equal(make_search_split(ds("cifar100"), {"split": "nb201"}, 0.5).arch, s2.arch)  # deterministic
    f = tmp_path / "cifar100-test-split.txt"
    f.write_text(json.dumps({"xvalid": ["int", [0, 5, 7]], "xtest": ["int", [1, 2]]}))
    s3 = make_search_split(ds("cifar100"), {"split": "nb201", "split_file": str(f)}, 0.5)
    assert s3.arch.tolist() == [200, 205, 207] and s3.uses_test
    f.write_text(json.dumps({"train": ["int", [0, 1]], "valid": ["int", [2, 300]]}))
    with pytest.raises(DataError, match="indices"):
        make_search_split(ds("cifar10"), {"split": "nb201", "split_file": str(f)}, 0.5)
    p = make_search_split(ds("cifar10"), {"split": "portion"}, 0.5)
    assert p.weights.tolist() == list(range(100))


def test_cifar_nb201_normalization_setting(tmp_path: Path) -> None:
    from nas_cli.data.cifar import CIFAR100, load_cifar

    d = tmp_path / "cifar-100-python"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train", 20), ("test", 10)):
        with open(d / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         "fine_labels": list(range(n))}, f)
    with open(d / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [str(i) for i in range(100)]}, f)
    a = load_cifar({"root": str(tmp_path)}, CIFAR100)
    b = load_cifar({"root": str(tmp_path), "normalization": "nb201"}, CIFAR100)
    assert a.mean == CIFAR100.mean and b.mean[0] == pytest.approx(129.3 / 255) and b.std[2] == pytest.approx(70.4 / 255)


def test_nas_arch_dispatches_nb201_strings(capsys) -> None:
    from nas_cli.report.arch import main

    resnet = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
    assert main([resnet]) == 0
    out = capsys.readouterr().out
    assert "imagenet16_120" in out and "cifar100" in out and "559,386" in out
    assert main(["|bogus~0|+|x|"]) != 0


def test_nas_report_dispatches_nb201_runs(tmp_path) -> None:
    """nas-report on NB201 search dirs prints Table-2 rows and draws the oracle curves."""
    import json as _json

    from nas_cli.report import print_report
    from nas_cli.stages.search import run_search

    table = tmp_path / "oracle.json"
    from nas_cli.spaces.nb201 import all_arch_strings

    table.write_text(_json.dumps({a: {"cifar10": 90.0 + (i % 7), "cifar100": 70.0, "imagenet16_120": 40.0}
                                  for i, a in enumerate(all_arch_strings())}))
    for seed in (0, 1):
        run_search(make_cfg([*NB_TINY, "method=gaea_darts", f"seed={seed}", "oracle=nb201",
                             f"oracle.path={table}"]), tmp_path / "runs" / f"seed{seed}")
    reports = print_report(tmp_path / "runs", tmp_path / "rep")
    assert any(r.name == "nb201_table2" for r in reports)
    assert (tmp_path / "rep" / "nb201_table2.md").is_file()
    assert (tmp_path / "rep" / "nb201_oracle_curves.png").is_file()
    assert "gaea_darts" in (tmp_path / "rep" / "nb201_table2.md").read_text()


def test_hard_forward_matches_the_spec_formula_per_edge() -> None:
    """methods.md §5: edge output h_k*·op_k*(x) + Σ_{k≠k*} h_k, summed over each node's edges --
    value and gradients (sample entries and op weights) of the optimised forward equal it."""
    from nas_cli.spaces.nb201 import NB201_EDGES, NB201_NODES

    torch.manual_seed(3)
    space = NB201Space({"init_channels": 4, "cells_per_stage": 1})
    net = space.build_supernet(10, 3, RelaxationSpec(sampling="hard"))
    cell = net.cells[0]
    p = torch.softmax(torch.randn(6, 5), -1).requires_grad_(True)
    onehot = torch.nn.functional.one_hot(torch.tensor([3, 0, 2, 4, 1, 3]), 5).float()
    w = onehot - p.detach() + p
    x = torch.randn(2, 4, 8, 8)

    def spec(x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for i in range(1, NB201_NODES):
            terms = []
            for e, (t, j) in enumerate(NB201_EDGES):
                if t == i:
                    k = int(onehot[e].argmax())
                    terms.append(w[e, k] * cell.edges[e][k](nodes[j]) + sum(w[e, o] for o in range(5) if o != k))
            nodes.append(sum(terms))
        return nodes[-1]

    from nas_cli.spaces.nb201 import HardSelection

    g = torch.randn(2, 4, 8, 8)
    params = [q for q in cell.parameters()]
    got = cell(x, w, HardSelection.of(w))
    ref = spec(x)
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
    ga = torch.autograd.grad((got * g).sum(), [p, *params], allow_unused=True, retain_graph=True)
    gb = torch.autograd.grad((ref * g).sum(), [p, *params], allow_unused=True)
    for a, b in zip(ga, gb):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert ga[0][onehot == 0].abs().min() > 0  # every non-selected entry receives the summed gradient
