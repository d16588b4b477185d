"""Genotype record, parsing, published library, and the evaluation networks built from genotypes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest
import torch
from torch import nn

from nas_cli.errors import ConfigError
from nas_cli.spaces import count_parameters
from nas_cli.spaces.darts_eval import EvalCell, NetworkCIFAR, NetworkImageNet, count_multiply_adds
from nas_cli.spaces.darts_ops import drop_path
from nas_cli.spaces.genotypes import (
    Genotype,
    genotype_aliases,
    get_genotype,
    iter_published,
    list_genotypes,
    parse_genotype_text,
    published_param_counts,
)

PUBLISHED = list_genotypes()

# DARTS_V2 exactly as the reference code's genotypes.py / search log prints it
DARTS_V2_TEXT = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
    "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
    "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], "
    "reduce_concat=[2, 3, 4, 5])"
)


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    """Tiny CPU convs run faster on one thread (and are immune to OpenMP contention with other jobs)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_library_contents() -> None:
    assert PUBLISHED == [
        "DARTS_V1",
        "DARTS_V2",
        "PC_DARTS_cifar",
        "PC_DARTS_image",
        "GAEA_PCDARTS_cifar10",
        "GAEA_PCDARTS_cifar10_seed1307",
        "GAEA_PCDARTS_imagenet",
        "edarts4",
    ]
    assert genotype_aliases() == {
        "DARTS": "DARTS_V2",
        "PCDARTS": "PC_DARTS_cifar",
        "GAEA_PCDARTS": "GAEA_PCDARTS_cifar10",
    }


@pytest.mark.parametrize("name", PUBLISHED)
def test_json_round_trip(name: str) -> None:
    geno = get_genotype(name)
    data = json.loads(json.dumps(geno.to_json()))
    assert data["normal_concat"] == [2, 3, 4, 5] and all(len(p) == 2 for p in data["normal"])
    assert Genotype.from_json(data) == geno
    assert hash(Genotype.from_json(data)) == hash(geno)


@pytest.mark.parametrize("name", PUBLISHED)
def test_text_forms_parse_to_json_genotype(name: str) -> None:
    geno = get_genotype(name)
    ranged = (
        f"Genotype(normal={list(geno.normal)}, normal_concat=range(2, 6), "
        f"reduce={list(geno.reduce)}, reduce_concat=range(2, 6))"
    )
    assert parse_genotype_text(ranged) == geno
    assert parse_genotype_text(geno.to_text()) == geno
    positional = f"genotypes.Genotype({list(geno.normal)}, [2, 3, 4, 5], {list(geno.reduce)}, range(2, 6))"
    assert parse_genotype_text(positional) == geno


def test_reference_text_literal() -> None:
    assert parse_genotype_text(DARTS_V2_TEXT) == get_genotype("DARTS_V2")


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('echo hacked')",
        "Genotype(normal=[('sep_conv_3x3', 0)] * 8, normal_concat=range(2, 6), reduce=[], reduce_concat=[2])",
        "Genotype(normal=[], normal_concat=range(2, 6))",
        "Genotype(normal=x, normal_concat=[2], reduce=[], reduce_concat=[2])",
        "Genotype(",
        "Genotype(foo=1)",
    ],
)
def test_text_parse_rejects_bad_input(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_genotype_text(text)


def _mutated(field: str, k: int, value: object) -> dict:
    data = get_genotype("DARTS_V2").to_json()
    data[field] = [list(p) for p in data[field]]
    data[field][k] = value
    return data


@pytest.mark.parametrize(
    "data,fragment",
    [
        ({**get_genotype("DARTS_V2").to_json(), "normal": get_genotype("DARTS_V2").to_json()["normal"][:7]}, "8"),
        (_mutated("normal", 3, ["conv_9x9", 0]), "conv_9x9"),
        (_mutated("reduce", 0, ["none", 0]), "none"),
        (_mutated("normal", 1, ["sep_conv_3x3", 2]), "input index 2"),
        (_mutated("reduce", 7, ["sep_conv_3x3", 6]), "input index 6"),
        ({**get_genotype("DARTS_V2").to_json(), "reduce_concat": [2, 9]}, "9"),
        ({"normal": []}, "missing"),
        (_mutated("normal", 0, ["sep_conv_3x3", "1"]), "pair"),
    ],
)
def test_validation_errors_are_one_line(data: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Genotype.from_json(data)
    msg = str(info.value)
    assert fragment in msg and "\n" not in msg


def test_name_lookup() -> None:
    v2 = get_genotype("DARTS_V2")
    for name in ("darts_v2", "Darts_V2", "DARTS", "darts", "darts-v2"):
        assert get_genotype(name) == v2
    assert get_genotype("pc_darts_cifar") == get_genotype("PCDARTS") == get_genotype("pc-darts")
    assert get_genotype("gaea_pcdarts_cifar10") == get_genotype("GAEA_PCDARTS") == get_genotype("gaea-pcdarts")
    assert get_genotype("gaea_pcdarts_imagenet") != get_genotype("gaea_pcdarts_cifar10")
    with pytest.raises(ConfigError) as info:
        get_genotype("darts_v3")
    msg = str(info.value)
    assert "darts_v3" in msg and all(n in msg for n in PUBLISHED) and "\n" not in msg


def test_file_lookup(tmp_path: Path) -> None:
    geno = get_genotype("PC_DARTS_image")
    plain = tmp_path / "g.json"
    plain.write_text(json.dumps(geno.to_json()))
    wrapped = tmp_path / "run_result.json"
    wrapped.write_text(json.dumps({"genotype": geno.to_json(), "epoch": 50}))
    text = tmp_path / "g.txt"
    text.write_text(geno.to_text() + "\n")
    assert get_genotype(str(plain)) == get_genotype(wrapped) == get_genotype(str(text)) == geno
    with pytest.raises(ConfigError):
        get_genotype(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError):
        get_genotype(str(bad))


# --------------------------------------------------------- eval networks
CIFAR_COUNTS = published_param_counts("cifar10_C36_L20")
IMAGENET_COUNTS = published_param_counts("imagenet_C48_L14")


@pytest.mark.parametrize("name", PUBLISHED)
def test_cifar_eval_param_counts(name: str) -> None:
    net = NetworkCIFAR(36, 10, 20, True, get_genotype(name))
    assert count_parameters(net) == CIFAR_COUNTS[name]
    assert count_parameters(net, exclude="nothing-excluded") > CIFAR_COUNTS[name]  # aux head exists, excluded


@pytest.mark.parametrize("name", PUBLISHED)
def test_imagenet_eval_param_counts(name: str) -> None:
    net = NetworkImageNet(48, 1000, 14, True, get_genotype(name))
    assert count_parameters(net) == IMAGENET_COUNTS[name]


def test_imagenet_aux_bn_option() -> None:
    g = get_genotype("edarts4")
    plain = NetworkImageNet(8, 10, 5, True, g)
    with_bn = NetworkImageNet(8, 10, 5, True, g, aux_bn=True)
    assert count_parameters(with_bn, exclude="x-none") - count_parameters(plain, exclude="x-none") == 2 * 768
    assert count_parameters(with_bn) == count_parameters(plain)


def _ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits, y)


def test_cifar_forward_backward_with_auxiliary() -> None:
    torch.manual_seed(0)
    net = NetworkCIFAR(8, 10, 5, True, get_genotype("GAEA_PCDARTS_cifar10"), drop_path_prob=0.2)
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 2])
    net.train()
    logits, aux = net(x)
    assert logits.shape == (2, 10) and aux is not None and aux.shape == (2, 10)
    (_ce(logits, y) + 0.4 * _ce(aux, y)).backward()
    assert net.auxiliary_head.classifier.weight.grad is not None
    assert net.stem[0].weight.grad is not None and net.stem[0].weight.grad.abs().sum() > 0
    net.eval()
    logits, aux = net(x)
    assert logits.shape == (2, 10) and aux is None
    no_aux = NetworkCIFAR(8, 10, 5, False, get_genotype("DARTS_V2")).train()
    assert no_aux(x)[1] is None


def test_imagenet_forward_with_auxiliary() -> None:
    torch.manual_seed(0)
    net = NetworkImageNet(8, 10, 5, True, get_genotype("PC_DARTS_image")).train()
    logits, aux = net(torch.randn(2, 3, 224, 224))
    assert logits.shape == (2, 10) and aux is not None and aux.shape == (2, 10)
    assert net.eval()(torch.randn(1, 3, 224, 224))[1] is None


# -------------------------------------------------------------- drop-path
def test_drop_path_function() -> None:
    torch.manual_seed(0)
    x = torch.rand(20000, 3, 2, 2) + 0.5
    p = 0.3
    y = drop_path(x, p)
    ratio = (y / x).flatten(1)
    dropped = (ratio == 0).all(1)
    kept = torch.isclose(ratio, torch.full_like(ratio, 1 / (1 - p))).all(1)
    assert bool((dropped | kept).all())  # whole samples are zeroed or scaled by 1/keep
    assert abs(dropped.float().mean().item() - p) < 0.02
    assert abs(y.mean().item() / x.mean().item() - 1.0) < 0.02  # expectation preserved
    assert drop_path(x, 0.0) is x


def test_drop_path_in_network() -> None:
    torch.manual_seed(0)
    g = get_genotype("DARTS_V2")
    net = NetworkCIFAR(8, 10, 5, False, g)
    x = torch.randn(4, 3, 16, 16)
    net.eval()
    net.drop_path_prob = 0.0
    ref = net(x)[0]
    net.drop_path_prob = 0.3
    assert torch.equal(net(x)[0], ref) and torch.equal(net(x)[0], ref)
    net.train()
    net.drop_path_prob = 0.0
    assert torch.equal(net(x)[0], net(x)[0])  # BN batch statistics alone are deterministic
    net.drop_path_prob = 0.3
    assert not torch.allclose(net(x)[0], net(x)[0])


def test_drop_path_skips_identity_and_drops_whole_samples() -> None:
    torch.manual_seed(0)
    # node 0 = max_pool(s0) + identity(s1); later nodes identity-only
    pairs = [("max_pool_3x3", 0), ("skip_connect", 1), ("skip_connect", 0), ("skip_connect", 1)] * 2
    g = Genotype(pairs, [2, 3, 4, 5], pairs, [2, 3, 4, 5]).validate()
    C, p = 4, 0.5
    cell = EvalCell(g, 6, 6, C, reduction=False, reduction_prev=False).train()
    s0, s1 = torch.randn(16, 6, 5, 5), torch.randn(16, 6, 5, 5)
    out = cell(s0, s1, drop_prob=p)
    pre0, pre1 = cell.preprocess0(s0), cell.preprocess1(s1)
    pooled = nn.functional.max_pool2d(pre0, 3, 1, 1)
    # identity-only nodes (node 1 = pre0 + pre1) are never dropped
    assert torch.allclose(out[:, C : 2 * C], pre0 + pre1, atol=1e-6)
    # node 0's pooled branch is either dropped or scaled by 1/keep, per sample, and identity kept
    diff = out[:, :C] - pre1
    zero = diff.flatten(1).abs().amax(1) < 1e-6
    scaled = (diff - pooled / (1 - p)).flatten(1).abs().amax(1) < 1e-5
    assert bool((zero ^ scaled).all()) and zero.any() and scaled.any()


# -------------------------------------------------------------- mult-adds
def test_count_multiply_adds() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, groups=1), nn.Conv2d(4, 4, 3, padding=1, groups=4),
                          nn.Flatten(), nn.Linear(4 * 8 * 8, 5))
    expect = 8 * 8 * 4 * 3 * 9 + 8 * 8 * 4 * 1 * 9 + 4 * 8 * 8 * 5
    assert count_multiply_adds(model, (3, 8, 8)) == expect
    assert count_multiply_adds(model, (2, 3, 8, 8)) == expect  # per image
    net = NetworkImageNet(48, 1000, 14, True, get_genotype("DARTS_V2")).train()
    macs = count_multiply_adds(net, (3, 224, 224))
    assert 500e6 < macs < 600e6  # ImageNet mobile setting
    assert net.training  # mode restored
