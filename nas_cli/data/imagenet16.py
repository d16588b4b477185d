"""ImageNet16-120 (NAS-Bench-201's down-sampled ImageNet, nasbench201.md §5).

Files under ``dataset.root`` (or ``root/ImageNet16``): ``train_data_batch_1`` ..
``train_data_batch_10`` and ``val_data``; each a pickle (latin1) of a dict with
``data`` (N x 768 uint8, channel-planar 3x16x16; nasbench201.md §5 says
3072, which is the 32x32 CIFAR row length) and ``labels`` (1..1000).
The 120-class subset keeps labels 1..120 and uses label-1.  The full files give
151,700 training and 6,000 test images; smaller (fixture) files are accepted,
the sizes are reported rather than asserted.  Normalisation: NB201's constants.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from nas_cli.data.base import DATASETS, ArrayDataset, cfg_get, from_arrays
from nas_cli.data.cifar import _read_pickle
from nas_cli.errors import DataError

TRAIN_FILES = tuple(f"train_data_batch_{i}" for i in range(1, 11))
TEST_FILES = ("val_data",)
NUM_CLASSES = 120
MEAN = (122.68 / 255, 116.66 / 255, 104.01 / 255)
STD = (63.22 / 255, 61.26 / 255, 65.09 / 255)
_PIXELS = 3 * 16 * 16


def _find_dir(root: Path) -> Path:
    for cand in (root / "ImageNet16", root):
        if all((cand / f).is_file() for f in TRAIN_FILES + TEST_FILES):
            return cand
    missing = [f for f in TRAIN_FILES + TEST_FILES if not (root / "ImageNet16" / f).is_file()
               and not (root / f).is_file()]
    raise DataError(f"ImageNet16 file '{missing[0] if missing else TRAIN_FILES[0]}' not found in {root} "
                    f"or {root / 'ImageNet16'}; point dataset.root= at the folder holding the NAS-Bench-201 "
                    f"ImageNet16 pickles (no download is available)")


def _read(directory: Path, files: tuple[str, ...], classes: int) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for name in files:
        path = directory / name
        d = _read_pickle(path)
        if "data" not in d or "labels" not in d:
            raise DataError(f"{path} lacks the 'data'/'labels' entries of an ImageNet16 file")
        data = np.asarray(d["data"])
        if data.ndim != 2 or data.shape[1] != _PIXELS or data.dtype != np.uint8:
            raise DataError(f"{path}: 'data' must be an N x {_PIXELS} uint8 array, got {data.dtype} {data.shape}")
        labels = np.asarray(d["labels"], dtype=np.int64).reshape(-1)
        if labels.shape[0] != data.shape[0]:
            raise DataError(f"{path}: {data.shape[0]} images but {labels.shape[0]} labels")
        keep = (labels >= 1) & (labels <= classes)
        xs.append(data[keep])
        ys.append(labels[keep] - 1)
    x = np.concatenate(xs).reshape(-1, 3, 16, 16)  # channel-planar rows -> NCHW directly
    return np.ascontiguousarray(x), np.concatenate(ys)


@DATASETS.register("imagenet16_120")
def build_imagenet16_120(cfg: Mapping[str, Any]) -> ArrayDataset:
    root_value = cfg_get(cfg, "root")
    if not root_value:
        raise DataError("dataset.root is not set; point it at the folder holding the ImageNet16 pickles")
    directory = _find_dir(Path(str(root_value)).expanduser())
    train_x, train_y = _read(directory, TRAIN_FILES, NUM_CLASSES)
    test_x, test_y = _read(directory, TEST_FILES, NUM_CLASSES)
    norm = cfg_get(cfg, "normalization", "nb201")
    if norm != "nb201":
        raise DataError(f"imagenet16_120 has only NB201 normalisation constants; got dataset.normalization={norm}")
    return from_arrays("imagenet16_120", cfg, train_x, train_y, test_x, test_y, NUM_CLASSES, MEAN, STD)
