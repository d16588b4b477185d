"""Weights/architecture splits of bilevel searches, by ``dataset.split``.

* ``portion`` (DARTS, training.md §3): the first ``train_portion`` of the training set
  trains the weights, the rest the architecture.
* ``nb201`` (NAS-Bench-201 protocol, nasbench201.md §5, discrepancies.md #16):
  CIFAR-10 -- a 25k/25k split of the training set; CIFAR-100 and ImageNet16-120 --
  weights on the *full* training set, architecture batches from the ``xvalid``
  half of the **test** set (with the training augmentation).  The official split
  files (``cifar-split.txt``, ``cifar100-test-split.txt``,
  ``imagenet-16-120-test-split.txt``) are random partitions that ship with the
  benchmark code; offline we use a documented deterministic rule instead --
  a class-stratified half chosen by a fixed-seed permutation (seed 0, independent
  of the run's seed) -- and ``dataset.split_file=<file>`` loads the official one.

Indices refer to the *pool* the search loop builds: the training images followed,
when ``uses_test`` is true, by the test images (index ``num_train + i`` = test image i).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from nas_cli.data.base import ArrayDataset, cfg_get
from nas_cli.data.loader import search_split
from nas_cli.errors import ConfigError, DataError
from nas_cli.registry import Registry

#: datasets whose NB201 architecture split is the xvalid half of the test set
NB201_TEST_SPLIT_DATASETS = frozenset({"cifar100", "imagenet16_120"})
RULE_SEED = 0


@dataclass
class SearchSplit:
    weights: torch.Tensor
    arch: torch.Tensor
    #: whether indices >= num_train refer to test images
    uses_test: bool = False


SplitRule = Callable[[ArrayDataset, float, Mapping[str, Any]], SearchSplit]
SPLITS: Registry[SplitRule] = Registry("dataset split")


def stratified_half(labels: torch.Tensor, seed: int = RULE_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic class-stratified halves: per class, a fixed-seed permutation, first half first.

    Classes with an odd count give the extra sample to the second half.  Returned
    indices are sorted.
    """
    g = torch.Generator().manual_seed(seed)
    first, second = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        k = idx.numel() // 2
        first.append(idx[:k])
        second.append(idx[k:])
    return torch.cat(first).sort().values, torch.cat(second).sort().values


def _read_split_file(path: str) -> dict[str, list[int]]:
    """Official NB201 split files: JSON ``{"train": ["int", [..]], "valid": ["int", [..]]}`` (or plain lists)."""
    p = Path(path).expanduser()
    try:
        obj = json.loads(p.read_text())
    except OSError as e:
        raise DataError(f"cannot read dataset.split_file {p}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise DataError(f"dataset.split_file {p} is not JSON ({e.msg})") from None
    out = {}
    for k, v in obj.items():
        if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], list):
            v = v[1]
        if isinstance(v, list):
            out[k] = [int(i) for i in v]
    return out


def _checked(idx: list[int], n: int, what: str, path: str) -> torch.Tensor:
    t = torch.tensor(idx, dtype=torch.int64)
    if t.numel() == 0 or int(t.min()) < 0 or int(t.max()) >= n:
        raise DataError(f"split file {path}: '{what}' indices must lie in [0, {n}) (wrong dataset?)")
    return t


@SPLITS.register("portion")
def portion_split(ds: ArrayDataset, train_portion: float, cfg: Mapping[str, Any]) -> SearchSplit:
    w, a = search_split(ds.num_train, train_portion)
    return SearchSplit(w, a)


@SPLITS.register("nb201")
def nb201_split(ds: ArrayDataset, train_portion: float, cfg: Mapping[str, Any]) -> SearchSplit:
    path = cfg_get(cfg, "split_file")
    if path:
        parts = _read_split_file(str(path))
        if "xvalid" in parts:  # test-set split: weights on the full training set
            a = _checked(parts["xvalid"], ds.num_test, "xvalid", path) + ds.num_train
            return SearchSplit(torch.arange(ds.num_train), a, uses_test=True)
        if "train" in parts and "valid" in parts:
            return SearchSplit(_checked(parts["train"], ds.num_train, "train", path),
                               _checked(parts["valid"], ds.num_train, "valid", path))
        raise DataError(f"split file {path} has neither 'xvalid' nor 'train'/'valid' entries")
    if ds.name in NB201_TEST_SPLIT_DATASETS:
        xvalid, _xtest = stratified_half(ds.test_y)
        return SearchSplit(torch.arange(ds.num_train), xvalid + ds.num_train, uses_test=True)
    w, a = stratified_half(ds.train_y)
    return SearchSplit(w, a)


def make_search_split(ds: ArrayDataset, cfg: Mapping[str, Any], train_portion: float) -> SearchSplit:
    rule = str(cfg_get(cfg, "split", "portion"))
    if rule not in SPLITS:
        raise ConfigError(f"unknown dataset.split '{rule}'; choose one of: {', '.join(SPLITS.names())}")
    return SPLITS.get(rule)(ds, train_portion, cfg)
